"""The decode loop: parity with transformers on the real model, behaviour on a tiny one."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
import torch

from engine.decode.decoder import Decoder
from engine.decode.textstream import TextStream, TokenTable
from engine.errors import GenerationError, InvalidParameterError, PromptTooLongError
from engine.params import SamplingParams
from engine.tokens.chat import ChatMessage, chat_prompt_ids

PROMPTS = [
    "What is the capital of France? Answer in one sentence.",
    "用中文写一句关于春天的话。",
    "Write a Python function that returns the n-th Fibonacci number.",
    "List three colours of the rainbow, with an emoji for each.",
    "Summarise this text.\n\n"
    + " ".join(
        f"Paragraph {i}: the quick brown fox jumps over the lazy dog while the committee "
        "debates the budget, the weather changes, and nobody remembers the agenda."
        for i in range(12)
    ),
]


def _chat(loaded: Any, text: str) -> list[int]:
    return chat_prompt_ids(loaded.tokenizer, [ChatMessage("user", text)])


def _generate(loaded: Any, ids: list[int], **kwargs: Any) -> Any:
    with torch.inference_mode():
        return loaded.model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            pad_token_id=loaded.tokenizer.pad_token_id or 2,
            **kwargs,
        )


def _run(loaded: Any, ids: list[int], **params: Any) -> Decoder:
    decoder = Decoder(loaded, SamplingParams(**params))
    decoder.prefill(ids)
    for _ in decoder:
        pass
    return decoder


# --- parity on the real model --------------------------------------------------------


@pytest.mark.real_model
@pytest.mark.parametrize("prompt", PROMPTS, ids=["english", "chinese", "code", "emoji", "long"])
def test_greedy_ids_equal_generate(real_model: Any, prompt: str) -> None:
    ids = _chat(real_model, prompt)
    theirs = _generate(real_model, ids, do_sample=False, max_new_tokens=64)[0, len(ids) :].tolist()
    ours = _run(real_model, ids, max_new_tokens=64, top_logprobs=3)
    assert ours.generated_ids == theirs
    assert ours.text == real_model.tokenizer.decode(ours.generated_ids, skip_special_tokens=True)


@pytest.mark.real_model
def test_greedy_with_repetition_penalty_equals_generate(real_model: Any) -> None:
    ids = _chat(real_model, "Repeat the word 'banana' many times.")
    theirs = _generate(real_model, ids, do_sample=False, max_new_tokens=48, repetition_penalty=1.3)[
        0, len(ids) :
    ].tolist()
    ours = _run(real_model, ids, max_new_tokens=48, repetition_penalty=1.3)
    assert ours.generated_ids == theirs


@pytest.mark.real_model
@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.02, "repetition_penalty": 1.1},
        {"temperature": 1.3, "top_k": 0, "top_p": 1.0, "min_p": 0.1, "repetition_penalty": 1.0},
    ],
    ids=["all-processors", "hot-min-p"],
)
def test_sampling_matches_generate_scores_and_draws(
    real_model: Any, settings: dict[str, Any]
) -> None:
    """Same seed: transformers draws from torch's global RNG, we from our own
    generator seeded the same way; both use one multinomial per step."""
    ids = _chat(real_model, "Write a short poem about the sea.")
    new = 24
    torch.manual_seed(123)
    out = _generate(
        real_model,
        ids,
        do_sample=True,
        max_new_tokens=new,
        output_scores=True,
        return_dict_in_generate=True,
        **settings,
    )
    theirs = out.sequences[0, len(ids) :].tolist()
    decoder = Decoder(real_model, SamplingParams(max_new_tokens=new, seed=123, **settings))
    decoder.prefill(ids)
    for index in range(len(theirs)):
        _raw, processed = decoder.next_distribution()
        expected = torch.softmax(out.scores[index][0], dim=-1)
        assert torch.allclose(processed.exp(), expected, atol=1e-5), f"step {index}"
        step = decoder.step()
        assert step.token_id == theirs[index], f"step {index}"
        assert step.processed_logprob == pytest.approx(
            math.log(float(expected[step.token_id])), abs=1e-4
        )
    assert decoder.done


@pytest.mark.real_model
def test_raw_probabilities_equal_a_fresh_forward_pass(real_model: Any) -> None:
    ids = _chat(real_model, "Name a famous painter.")
    decoder = Decoder(
        real_model, SamplingParams(max_new_tokens=12, temperature=0.9, top_k=20, seed=1)
    )
    decoder.prefill(ids)
    steps = list(decoder)
    for step in (steps[0], steps[-1]):
        prefix = ids + decoder.generated_ids[: step.index]
        with torch.inference_mode():
            logits = real_model.model(torch.tensor([prefix]), use_cache=False).logits[0, -1]
        probs = torch.softmax(logits.float(), dim=-1)
        assert step.prob == pytest.approx(float(probs[step.token_id]), abs=1e-4)
        for candidate in step.top:
            assert candidate.prob == pytest.approx(float(probs[candidate.token_id]), abs=1e-4)
        assert step.rank == 1 + int((probs > probs[step.token_id]).sum())


# --- behaviour on the tiny model -----------------------------------------------------


def _tiny(tiny_model: Any, **params: Any) -> Decoder:
    params.setdefault("max_new_tokens", 20)
    decoder = Decoder(tiny_model, SamplingParams(**params))
    decoder.prefill(tiny_model.tokenizer("Hello there", add_special_tokens=False)["input_ids"])
    return decoder


def test_steps_carry_consistent_records(tiny_model: Any) -> None:
    decoder = _tiny(tiny_model, temperature=0.7, top_k=5, seed=3, top_logprobs=5)
    steps = list(decoder)
    assert [s.index for s in steps] == list(range(len(steps)))
    for step in steps:
        assert len(step.top) == 5
        assert step.processed_logprob > -math.inf  # sampled tokens are never filtered
        assert step.processed_rank <= 5
        assert step.piece == tiny_model.tokenizer.convert_ids_to_tokens(step.token_id)
        assert step.elapsed_ms > 0
    assert steps[-1].finish_reason == decoder.finish_reason


def test_candidates_say_which_processor_dropped_them(tiny_model: Any) -> None:
    decoder = _tiny(tiny_model, temperature=1.0, top_k=3, top_p=0.95, seed=3, top_logprobs=8)
    for step in list(decoder)[:5]:
        for candidate in step.top:
            filtered = candidate.processed_logprob == -math.inf
            assert (candidate.dropped_by is not None) == filtered
        assert [c.dropped_by for c in step.top[3:]] == ["top-k"] * 5  # ranks 4.. by raw
        assert all(c.dropped_by in (None, "top-p") for c in step.top[:3])


def test_greedy_candidates_other_than_the_argmax_are_marked_greedy(tiny_model: Any) -> None:
    decoder = _tiny(tiny_model, temperature=0.0, top_logprobs=4, max_new_tokens=3)
    for step in decoder:
        assert step.top[0].token_id == step.token_id and step.top[0].dropped_by is None
        assert [c.dropped_by for c in step.top[1:]] == ["greedy"] * 3


def test_same_seed_same_tokens_and_propose_then_step_uses_the_same_draw(tiny_model: Any) -> None:
    first = _tiny(tiny_model, temperature=1.0, seed=11)
    list(first)
    second = _tiny(tiny_model, temperature=1.0, seed=11)
    for _ in range(len(first.generated_ids)):
        proposal = second.propose()
        assert second.propose() == proposal
        assert second.step().token_id == proposal.sampled
    assert second.generated_ids == first.generated_ids


def test_forced_token_is_recorded_with_its_probabilities(tiny_model: Any) -> None:
    decoder = _tiny(tiny_model, temperature=0.5, top_k=3, seed=0)
    proposal = decoder.propose()
    top3 = {c.token_id for c in proposal.top[:3]}
    worst = next(t for t in range(300, 600) if t not in top3)  # filtered by top-k
    step = decoder.step(force=worst)
    assert step.forced and step.token_id == worst
    assert step.processed_logprob == -math.inf
    assert step.rank > 1 and step.logprob < proposal.top[0].logprob
    assert decoder.generated_ids == [worst]
    with pytest.raises(InvalidParameterError):
        decoder.step(force=10**9)


def test_rewind_crops_and_continues_identically(tiny_model: Any) -> None:
    decoder = _tiny(tiny_model, max_new_tokens=12)
    original = list(decoder)
    decoder.rewind(5)
    assert decoder.generated_ids == [s.token_id for s in original[:7]]
    assert decoder.finish_reason is None and len(decoder.steps) == 7
    assert decoder.text == "".join(s.text for s in original[:7])
    again = list(decoder)
    assert [s.token_id for s in again] == [s.token_id for s in original[7:]]
    for a, b in zip(again, original[7:], strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-5)


def test_branch_with_a_forced_token_then_rewind_to_the_start(tiny_model: Any) -> None:
    decoder = _tiny(tiny_model, max_new_tokens=6)
    first = decoder.step()
    decoder.rewind(1)
    branch = decoder.step(force=first.top[1].token_id)
    assert branch.forced and decoder.generated_ids == [first.top[1].token_id]
    assert branch.logprob == pytest.approx(first.top[1].logprob, abs=1e-5)
    decoder.rewind(1)
    assert decoder.generated_ids == [] and decoder.text == ""
    assert decoder.step().token_id == first.token_id
    with pytest.raises(InvalidParameterError):
        decoder.rewind(5)


def test_eos_stops_with_reason_stop(tiny_model: Any) -> None:
    decoder = _tiny(tiny_model)
    decoder.step()
    step = decoder.step(force=tiny_model.eos_token_ids[0])
    assert step.finish_reason == "stop" and decoder.finish_reason == "stop"
    assert step.special and step.text == ""
    assert list(decoder) == []
    with pytest.raises(GenerationError):
        decoder.step()


def test_stop_string_is_not_emitted(tiny_model: Any) -> None:
    tokenizer = tiny_model.tokenizer
    decoder = _tiny(tiny_model, stop=("wor",))
    forced = tokenizer(" hello world again", add_special_tokens=False)["input_ids"]
    steps = []
    for token in forced:
        steps.append(decoder.step(force=token))
        if decoder.done:
            break
    assert decoder.finish_reason == "stop" and steps[-1].finish_reason == "stop"
    assert decoder.text == " hello "
    assert "".join(s.text for s in steps) == " hello "


def test_max_new_tokens_stops_with_length(tiny_model: Any) -> None:
    decoder = _tiny(tiny_model, max_new_tokens=4)
    steps = list(decoder)
    assert len(steps) == 4 and decoder.finish_reason == "length"
    summary = decoder.summary()
    assert summary.finish_reason == "length"
    assert (summary.prompt_tokens, summary.completion_tokens) == (len(decoder.prompt_ids), 4)
    assert summary.tokens_per_second > 0 and summary.time_to_first_token_ms > 0
    assert summary.text == decoder.text


def test_context_window_stops_with_context(tiny_model: Any) -> None:
    window = tiny_model.context_window
    decoder = Decoder(tiny_model, SamplingParams(max_new_tokens=50))
    decoder.prefill([100] * (window - 3))
    steps = list(decoder)
    assert len(steps) == 3 and decoder.finish_reason == "context"


def test_prompt_over_the_window_fails_before_any_work(tiny_model: Any) -> None:
    decoder = Decoder(tiny_model, SamplingParams())
    with pytest.raises(PromptTooLongError, match="context window"):
        decoder.prefill([100] * tiny_model.context_window)
    with pytest.raises(GenerationError):
        decoder.step()
    with pytest.raises(InvalidParameterError):
        decoder.prefill([])


def test_cancel_mid_stream(tiny_model: Any) -> None:
    cancel = threading.Event()
    decoder = Decoder(tiny_model, SamplingParams(max_new_tokens=50), cancel=cancel)
    decoder.prefill([100, 200, 300])
    seen = []
    for step in decoder:
        seen.append(step)
        if len(seen) == 3:
            decoder.cancel()
    assert len(seen) == 3 and decoder.finish_reason == "cancelled"
    assert cancel.is_set() and decoder.summary().finish_reason == "cancelled"


# --- UTF-8 safety ----------------------------------------------------------------------

SPLIT_TEXT = "春天来了🙂 the 👍🏽 end, 你好世界!"


@pytest.mark.real_model
def test_text_stream_emits_only_complete_characters(real_model: Any) -> None:
    tokenizer = real_model.tokenizer
    ids = tokenizer(SPLIT_TEXT, add_special_tokens=False)["input_ids"]
    stream = TextStream(tokenizer)
    deltas = [stream.push(i) for i in ids] + [stream.finish()]
    assert "" in deltas  # some tokens hold only part of a character
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == tokenizer.decode(ids, skip_special_tokens=True) == SPLIT_TEXT


def test_decoder_text_deltas_are_valid_when_forced_through_split_characters(
    tiny_model: Any,
) -> None:
    tokenizer = tiny_model.tokenizer
    ids = tokenizer(SPLIT_TEXT, add_special_tokens=False)["input_ids"]
    decoder = _tiny(tiny_model, max_new_tokens=len(ids))
    steps = [decoder.step(force=i) for i in ids]
    assert all("\ufffd" not in s.text for s in steps)
    assert "".join(s.text for s in steps) == SPLIT_TEXT == decoder.text
    assert b"".join(s.token_bytes for s in steps) == SPLIT_TEXT.encode()


@pytest.mark.real_model
def test_stop_string_split_across_tokens_is_held_back(real_model: Any) -> None:
    tokenizer = real_model.tokenizer
    ids = tokenizer("say STOP now", add_special_tokens=False)["input_ids"]
    stream = TextStream(tokenizer, stop=("STOP",))
    deltas = [stream.push(i) for i in ids]
    assert "".join(deltas) == "say " and stream.stopped == "STOP"
    unfinished = TextStream(tokenizer, stop=("STOP",))
    part = tokenizer("say ST", add_special_tokens=False)["input_ids"]
    held = "".join(unfinished.push(i) for i in part)
    assert "ST" not in held
    assert held + unfinished.finish() == "say ST"


@pytest.mark.real_model
def test_token_table_bytes_and_display(real_model: Any) -> None:
    table = TokenTable(real_model.tokenizer)
    ids = real_model.tokenizer(" the 🙂", add_special_tokens=False)["input_ids"]
    assert b"".join(table.token_bytes(i) for i in ids) == " the 🙂".encode()
    assert table.display(ids[0]) == " the"
    assert table.is_special(2) and table.display(2) == "<|im_end|>"


def test_step_time_counts_compute_not_the_wait_for_the_user(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step mode: propose, the user thinks, then accepts. The step's elapsed_ms (what
    the status bar's tok/s and the summary add up) holds the draw (forward
    included, timed in propose) and the commit, never the wait between them.
    The wait is a jump of the decoder's clock, so a busy machine cannot blur it."""
    import time
    import types

    import engine.decode.decoder as decoder_module
    from engine.records import decode_rate

    waited = [0.0]
    clock = types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + waited[0])
    monkeypatch.setattr(decoder_module, "time", clock)
    decoder = _tiny(tiny_model, temperature=1.0, seed=3)
    wait = 1000.0  # seconds the user "thinks" before each key
    for _ in range(3):
        decoder.propose()
        waited[0] += wait
        step = decoder.step()
        assert 0.0 < step.elapsed_ms < wait * 1000.0 / 2
    rate = decode_rate([s.elapsed_ms for s in decoder.steps], decoder.prefill_seconds * 1000.0)
    assert rate > 2 / wait  # waiting time counted would cap it near 1 / wait
