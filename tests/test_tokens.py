"""Token views: exact bytes, visible display, flags — on the bundled byte-level BPE
tokenizer and on a byte-fallback SentencePiece-style tokenizer built here."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.tokens.views import (
    TokenView,
    display_bytes,
    display_piece,
    ids_view,
    special_tokens_summary,
    token_bytes,
    token_view,
)

pytestmark = pytest.mark.real_model

ROUND_TRIP_TEXTS = [
    "Hello, world!",
    "中文分词测试：你好，世界。",
    "family 👨‍👩‍👧‍👦 and 🏳️‍🌈 flags",
    "cafe\u0301 n\u0303 a\u030a\u0323",  # combining marks
    "tabs\tand\nnewlines\r\n\n",
    "  leading and trailing spaces  ",
    " ",
    "",
    "mixed: ünïcödé — “quotes” 😀\t中\n",
]

CHATML = (
    "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_sentencepiece_tokenizer(style: str = "legacy") -> Any:
    """A small Llama-style BPE with ``▁`` for spaces and ``<0xNN>`` byte fallback.

    ``legacy`` prepends ``▁`` with a normalizer (Llama 2); ``metaspace`` with a
    Metaspace pre-tokenizer (prepend_scheme="first", Mistral/Llama-2 fast).
    Everything outside its tiny alphabet (CJK, emoji, tabs) falls back to bytes.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for ch in "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?:;'\"-_|<>/[]":
        vocab.setdefault(ch, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in ("▁hello", "▁world", "▁the", "▁and", "ing", "▁spaces", "▁user", "▁hi"):
        current = word[0]
        for ch in word[1:]:
            merges.append((current, ch))
            current += ch
            vocab.setdefault(current, len(vocab))
    merges = list(dict.fromkeys(merges))
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    if style == "legacy":
        tok.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
        tok.decoder = decoders.Sequence(
            [
                decoders.Replace("▁", " "),
                decoders.ByteFallback(),
                decoders.Fuse(),
                decoders.Strip(" ", 1, 0),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Sequence(
            [decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="first")]
        )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")]
    )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    wrapped.chat_template = CHATML
    return wrapped


@pytest.fixture(params=["legacy", "metaspace"])
def sp_tokenizer(request: pytest.FixtureRequest) -> Any:
    return build_sentencepiece_tokenizer(request.param)


@pytest.fixture(scope="module")
def tok(real_model: Any) -> Any:
    return real_model.tokenizer


def _joined(view: TokenView) -> bytes:
    return b"".join(t.bytes for t in view.tokens)


# --- bytes round-trip ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_bytes_round_trip_bundled_model(tok: Any, text: str) -> None:
    view = token_view(tok, text)
    assert _joined(view) == text.encode("utf-8")
    assert view.byte_exact
    assert view.ids == tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_bytes_round_trip_sentencepiece_byte_fallback(sp_tokenizer: Any, text: str) -> None:
    view = token_view(sp_tokenizer, text)
    assert _joined(view) == text.encode("utf-8")
    assert view.byte_exact


def test_token_bytes_is_not_decode_of_one_id(tok: Any) -> None:
    """A byte-level token carrying half of 世 has two bytes; decode([id]) would give U+FFFD."""
    view = token_view(tok, "世")
    first = view.tokens[0]
    assert token_bytes(tok, first.id) == first.bytes
    assert len(first.bytes) < 3 and first.partial
    assert tok.decode([first.id]).encode("utf-8") != first.bytes
    assert view.tokens[-1].partial is False


def test_token_bytes_match_the_decoder_across_the_vocabulary(tok: Any) -> None:
    """For every whole-character token, our bytes equal what the tokenizer decodes."""
    checked = 0
    for token_id in range(len(tok)):
        decoded = tok.decode([token_id])
        if "\ufffd" in decoded:
            continue
        assert token_bytes(tok, token_id) == decoded.encode("utf-8"), token_id
        checked += 1
    assert checked > 40_000


def test_byte_fallback_pieces_are_read_as_bytes(sp_tokenizer: Any) -> None:
    view = token_view(sp_tokenizer, "a中")
    pieces = [t.piece for t in view.tokens]
    assert "<0xE4>" in pieces
    by_piece = {t.piece: t for t in view.tokens}
    assert by_piece["<0xE4>"].bytes == b"\xe4"
    assert by_piece["<0xE4>"].partial
    assert by_piece["<0xE4>"].display == "<0xE4>"
    assert view.tokens[-1].partial is False


def test_sentencepiece_prefix_space_is_not_text(sp_tokenizer: Any) -> None:
    view = token_view(sp_tokenizer, "hello world")
    first = view.tokens[0]
    assert first.piece == "▁hello"
    assert first.piece_bytes == b" hello"
    assert first.bytes == b"hello"
    assert first.display == "hello"
    assert view.tokens[1].display == "·world"
    assert (first.start, first.end) == (0, 5)


# --- display and flags -------------------------------------------------------------------


def test_pieces_keep_markers_and_display_resolves_them(tok: Any) -> None:
    view = token_view(tok, "a hello\tb\n")
    pieces = [t.piece for t in view.tokens]
    displays = [t.display for t in view.tokens]
    assert "Ġhello" in pieces
    assert "·hello" in displays
    assert "→" in "".join(displays)
    assert displays[-1] == "↵"
    assert display_piece(tok, tok.convert_tokens_to_ids("Ġhello")) == "·hello"


def test_display_bytes_shows_broken_utf8_as_hex() -> None:
    assert display_bytes(b"a \xe4\xb8") == "a·<0xE4><0xB8>"
    assert display_bytes("é\r\x00".encode()) == "é␍␀"


def test_special_text_is_plain_by_default_and_special_when_allowed(tok: Any) -> None:
    text = "hi <|im_end|> there"
    plain = token_view(tok, text)
    assert 2 not in plain.ids
    assert not any(t.special for t in plain.tokens)
    assert _joined(plain) == text.encode()
    parsed = token_view(tok, text, allow_special=True)
    assert 2 in parsed.ids
    marker = next(t for t in parsed.tokens if t.id == 2)
    assert marker.special and marker.display == "<|im_end|>" and marker.piece == "<|im_end|>"
    assert _joined(parsed) == text.encode()


def test_char_spans_cover_the_text(tok: Any) -> None:
    text = "héllo 👋 world"
    view = token_view(tok, text)
    assert view.tokens[0].start == 0
    assert view.tokens[-1].end == len(text)
    for before, after in zip(view.tokens, view.tokens[1:], strict=False):
        assert before.start is not None and after.start is not None
        assert after.start >= before.start


def test_to_dict_is_the_design_json_shape(tok: Any) -> None:
    data = token_view(tok, "Hi\n").to_dict()
    assert data["count"] == len(data["tokens"])
    first = data["tokens"][0]
    for key in ("position", "id", "piece", "display", "bytes", "special", "origin"):
        assert key in first
    assert first["origin"] == "text"
    assert all(isinstance(b, int) for b in first["bytes"])
    json.dumps(data)


def test_ids_view_of_a_generated_continuation(tok: Any) -> None:
    ids = tok("The 世界 is", add_special_tokens=False)["input_ids"]
    view = ids_view(tok, ids, origin="assistant")
    assert view.text == "The 世界 is"
    assert {t.origin for t in view.tokens} == {"assistant"}
    assert any(t.partial for t in view.tokens)


def test_special_tokens_summary(real_model: Any) -> None:
    tok = real_model.tokenizer
    summary = special_tokens_summary(tok, real_model.eos_token_ids)
    assert summary["bos"] == {"token": "<|im_start|>", "id": 1}
    assert summary["eos"] == {"token": "<|im_end|>", "id": 2}
    assert summary["unk"] == {"token": "<|endoftext|>", "id": 0}
    assert summary["vocab_size"] == 49152
    assert summary["eos_ids"] == [2]
    assert summary["eos_tokens"] == ["<|im_end|>"]
    assert {"id": 1, "token": "<|im_start|>", "special": True} in summary["added_tokens"]
    assert "<|im_start|>" in summary["chat_template"]
    assert summary["chat_template_source"].endswith("chat_template.jinja")
    json.dumps(summary)


def test_summary_without_a_template(sp_tokenizer: Any) -> None:
    sp_tokenizer.chat_template = None
    summary = special_tokens_summary(sp_tokenizer, [2])
    assert summary["chat_template"] is None and summary["chat_template_source"] == "none"
    assert summary["pad"] is None
