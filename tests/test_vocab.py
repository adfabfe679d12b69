"""Vocabulary lookup on the bundled tokenizer: ids to entries, strings to tokens.
(Timing lives in bench/vocab_lookup.py, not here.)"""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import InvalidParameterError
from engine.tokens.views import token_bytes, token_view
from engine.tokens.vocab import VocabIndex, vocab_index

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def index(real_model: Any) -> VocabIndex:
    return vocab_index(real_model.tokenizer)


def test_index_is_built_once_per_tokenizer(real_model: Any, index: VocabIndex) -> None:
    assert vocab_index(real_model.tokenizer) is index
    assert len(index) == 49152


def test_lookup_id_gives_piece_bytes_display(real_model: Any, index: VocabIndex) -> None:
    tok = real_model.tokenizer
    hello = tok.convert_tokens_to_ids("Ġhello")
    entry = index.lookup_id(hello)
    assert (entry.piece, entry.display, entry.bytes, entry.special) == (
        "Ġhello",
        "·hello",
        b" hello",
        False,
    )
    assert entry.text == " hello" and not entry.partial
    end = index.lookup_id(2)
    assert end.special and end.display == "<|im_end|>"
    assert entry.to_dict()["bytes"] == list(b" hello")


def test_lookup_agrees_with_token_views(real_model: Any, index: VocabIndex) -> None:
    tok = real_model.tokenizer
    for info in token_view(tok, "世界 👋 tab\there").tokens:
        entry = index.lookup_id(info.id)
        assert entry.bytes == info.piece_bytes == token_bytes(tok, info.id)
        assert entry.piece == info.piece


def test_lookup_out_of_range_names_the_range(index: VocabIndex) -> None:
    with pytest.raises(InvalidParameterError, match=r"0\.\.49151"):
        index.lookup_id(49152)


@pytest.mark.parametrize("query", ["hello", "Ġhello", "·hello", " hello"])
def test_exact_matches_piece_display_or_text(index: VocabIndex, query: str) -> None:
    found = index.search(query, mode="exact")
    assert found, query
    assert all(query in (e.piece, e.display, e.text) for e in found)


def test_prefix_puts_exact_first_then_short_matches(index: VocabIndex) -> None:
    found = index.search("hel", mode="prefix", limit=10)
    assert found[0].piece == "hel"
    assert len(found) == 10
    assert all(any(form.startswith("hel") for form in (e.piece, e.display, e.text)) for e in found)
    lengths = [len(e.piece) for e in found[1:]]
    assert lengths == sorted(lengths)


def test_substring_finds_matches_anywhere(index: VocabIndex) -> None:
    found = index.search("ing", mode="substring", limit=200)
    assert found[0].piece == "ing"
    assert len(found) == 200
    assert all("ing" in e.piece or "ing" in e.display or "ing" in e.text for e in found)
    assert any(not e.piece.startswith("ing") for e in found)
    assert len({e.id for e in found}) == len(found)


def test_special_tokens_and_byte_displays_are_searchable(index: VocabIndex) -> None:
    assert [e.id for e in index.search("<|im", mode="prefix")] == [2, 1]
    assert any(e.partial for e in index.search("<0xE4>", mode="prefix"))


def test_no_match_empty_query_and_bad_mode(index: VocabIndex) -> None:
    assert index.search("qqqqzzzzxx") == []
    assert index.search("") == []
    with pytest.raises(InvalidParameterError, match="mode"):
        index.search("a", mode="fuzzy")  # type: ignore[arg-type]


def test_resolve_takes_an_id_a_quoted_piece_or_text(real_model: Any, index: VocabIndex) -> None:
    tok = real_model.tokenizer
    hello = tok.convert_tokens_to_ids("Ġhello")

    def encode(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    assert index.resolve(str(hello), encode) == (index.lookup_id(hello), "")
    assert index.resolve("'Ġhello'", encode)[0].id == hello
    assert index.resolve('" hello"', encode)[0].id == hello
    assert index.resolve(" hello", encode)[0].id == hello
    entry, note = index.resolve(" hello world", encode)
    assert entry.id == hello and "2 tokens" in note
    with pytest.raises(InvalidParameterError, match="no token is exactly"):
        index.resolve("'Ġhello world'", encode)
    with pytest.raises(InvalidParameterError, match="type an id"):
        index.resolve("  ", encode)
