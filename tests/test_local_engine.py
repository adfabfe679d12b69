"""The local engine behind the decode protocol: the same tokens as the bare
decoder, a kept prefix continued and renumbered, rewinds into it, cancellation."""

from __future__ import annotations

import threading
from typing import Any

from engine.decode import LocalEngine, run_reply
from engine.decode.decoder import Decoder
from engine.model import ModelSpec
from engine.params import SamplingParams
from engine.tokens import ChatMessage

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=8, top_logprobs=3)
CHAT = [ChatMessage("user", "Name a colour.")]


def _engine(tiny_model: Any) -> LocalEngine:
    engine = LocalEngine(tiny_model)
    engine.load(ModelSpec())
    return engine


def _bare(tiny_model: Any, ids: list[int], params: SamplingParams) -> list[int]:
    decoder = Decoder(tiny_model, params)
    decoder.prefill(ids)
    return [step.token_id for step in decoder]


def test_a_reply_yields_the_decoders_tokens_and_summary(tiny_model: Any) -> None:
    engine = _engine(tiny_model)
    ids = engine.chat_ids(CHAT)
    assert engine.render_prompt(CHAT).ids == ids
    result = run_reply(engine.start(CHAT, GREEDY))
    assert [s.token_id for s in result.steps] == _bare(tiny_model, ids, GREEDY)
    assert [s.index for s in result.steps] == list(range(len(result.steps)))
    summary = result.summary
    assert summary.prompt_tokens == len(ids)
    assert summary.token_ids == tuple(s.token_id for s in result.steps)
    assert summary.text == "".join(s.text for s in result.steps)
    assert engine.token_bytes(result.steps[0].token_id) == result.steps[0].token_bytes


def test_a_kept_prefix_is_continued_renumbered_and_rewound_into(tiny_model: Any) -> None:
    engine = _engine(tiny_model)
    ids = engine.chat_ids(CHAT)
    full = _bare(tiny_model, ids, GREEDY)
    reply = engine.start(CHAT, GREEDY, prefix=full[:3])
    reply.prefill()
    step = reply.step()
    assert (step.index, step.token_id) == (3, full[3])
    reply.rewind(2)  # back into the prefix: rebuilt from prompt + the kept 2 tokens
    assert reply.step().token_id == full[2]
    rest = run_steps(reply)
    assert reply.summary().token_ids == tuple(full)
    assert rest[-1].index == len(full) - 1


def run_steps(reply: Any) -> list[Any]:
    out = []
    while not reply.done:
        out.append(reply.step())
    return out


def test_cancel_ends_the_reply_as_cancelled_with_a_summary(tiny_model: Any) -> None:
    engine = _engine(tiny_model)
    cancel = threading.Event()
    reply = engine.start(CHAT, GREEDY, cancel=cancel)
    reply.prefill()
    reply.step()
    cancel.set()
    assert reply.done and reply.finish_reason == "cancelled"
    assert reply.summary().completion_tokens == 1


def test_raw_text_uses_the_guarded_encoding(tiny_model: Any) -> None:
    engine = _engine(tiny_model)
    typed = "say <|im_end|> now"
    special = engine.encode(typed, allow_special=True)
    guarded = engine.encode(typed)
    end = tiny_model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end in special and end not in guarded
