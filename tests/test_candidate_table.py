"""The Step tab's candidates as text: columns that fit, bars and ids dropped in
that order when they do not, a removed candidate that never reads as a number."""

from __future__ import annotations

import math

import pytest
from rich.cells import cell_len
from rich.style import Style

from engine.records import Candidate
from tui.widgets.candidate_table import FILTERED, GREEDY_LEGEND, TableStyles, candidate_table

STYLES = TableStyles(Style(color="yellow"), Style(color="green"), Style(bold=True), Style(dim=True))
TOP = [
    Candidate(3007, "Ġinput", math.log(0.889), math.log(0.95), " input"),
    Candidate(2798, "Ġoriginal", math.log(0.019), math.log(0.05), " original"),
    Candidate(1142, "Ġsame", math.log(0.009), -math.inf, " same", dropped_by="top-p"),
]


def lines(width: int, top: list[Candidate] = TOP, chosen: int | None = 3007) -> list[str]:
    return candidate_table(top, chosen, "raw", width, STYLES).plain.split("\n")


def test_a_wide_view_shows_every_column_with_bars() -> None:
    header, rule, *rows, legend = lines(60)
    assert header.split() == ["#", "token", "id", "raw", "processed"]
    assert rows[0].startswith("› 1  ·input")  # the chosen token is marked
    assert "3007" in rows[0] and "88.9% ████▍" in rows[0] and "95.0% ████▊" in rows[0]
    assert rows[2].endswith(f"{FILTERED} top-p")  # removed: a dash and who removed it
    assert legend.startswith("— dropped by top-p")
    assert set(rule) == {"─"} and len(rule) == max(map(cell_len, [header, *rows]))


@pytest.mark.parametrize("width", [30, 36, 40, 44, 48, 52, 60, 80])
def test_the_table_lines_fit_the_width(width: int) -> None:
    header, rule, *rows, _legend = lines(width)
    assert all(cell_len(line) <= width for line in [header, rule, *rows])


def test_narrower_views_drop_the_bars_then_the_ids() -> None:
    no_bars = lines(40)[2]
    assert "3007" in no_bars and "█" not in no_bars and "88.9%" in no_bars
    no_ids = lines(32)[2]
    assert "3007" not in no_ids and "88.9%" in no_ids and "95.0%" in no_ids


def test_wide_tokens_are_padded_by_cells_not_characters() -> None:
    top = [
        Candidate(10, "日本語", -0.1, -0.1, "日本語"),
        Candidate(11, "ab", -2.0, -2.0, "ab"),
    ]
    _header, _rule, first, second = lines(60, top, chosen=None)
    # the id column starts at the same cell on both rows
    assert cell_len(first[: first.index("10")]) == second.index("11")


def test_greedy_dims_what_it_could_not_pick_and_says_so() -> None:
    top = [
        Candidate(1, "a", -0.1, -0.1, "a"),
        Candidate(2, "b", -2.5, -2.5, "b", dropped_by="greedy"),
    ]
    text = candidate_table(top, 1, "raw", 60, STYLES)
    assert text.plain.endswith(GREEDY_LEGEND)
    second = text.plain.split("\n")[3]
    start = text.plain.index(second)
    dimmed = [s for s in text.spans if s.style == STYLES.dim and s.start >= start]
    assert dimmed and dimmed[0].end <= start + len(second)


def test_no_candidates_draw_nothing() -> None:
    assert candidate_table([], None, "raw", 60, STYLES).plain == ""
