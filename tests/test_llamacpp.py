"""The llama.cpp backend on the bundled model: parity with the transformers loop,
the sampling functions' numbers on llama.cpp's logits, rewind, force, cancel,
bytes, the GGUF's anatomy, and the server on top. Skipped without the binding
(``pip install -e '.[llamacpp]'``)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

pytest.importorskip("llama_cpp")

import torch

from engine.decode import LlamaEngine, LocalEngine, run_reply
from engine.decode.sampling import choose, make_generator, process, summarize
from engine.model import describe_llama
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from engine.tokens import ChatMessage

pytestmark = [pytest.mark.real_model, pytest.mark.timeout(300)]

# Greedy parity prompts, chosen by measuring: over the first PARITY_TOKENS greedy
# tokens on the transformers backend, the smallest top-1 margin (best logprob minus
# second) is 0.93 / 0.73 / 1.82 / 0.63 nats, well above the 0.05-0.15 nats by which
# llama.cpp's Q4_1 kernels and the dequantized float32 model differ. Low-margin
# prompts ("What is the capital of France?": 0.08 at its first token) do flip.
PARITY_PROMPTS = (
    "Count from 1 to 5.",
    "What is 2+2?",
    "What is the largest planet in the solar system?",
    "What is the boiling point of water?",
)
PARITY_TOKENS = 8
SPLIT_TEXT = "naïve café — 日本語 🙂 done"


@pytest.fixture(scope="module")
def llama() -> LlamaEngine:
    engine = LlamaEngine()
    engine.load(ModelSpec(backend="llama.cpp", device="cpu"))
    return engine


def _greedy(n: int, top: int = 10, **extra: Any) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_new_tokens=n, top_logprobs=top, **extra)


@pytest.mark.parametrize("prompt", PARITY_PROMPTS)
def test_greedy_ids_equal_transformers(llama: LlamaEngine, real_model: Any, prompt: str) -> None:
    messages = [ChatMessage("user", prompt)]
    ours = run_reply(llama.start(messages, _greedy(PARITY_TOKENS)))
    local = LocalEngine(preloaded=real_model)
    local.load(ModelSpec(device="cpu"))
    reference = run_reply(local.start(messages, _greedy(PARITY_TOKENS)))
    assert llama.chat_ids(messages) == local.chat_ids(messages)  # same prompt ids
    margins = [s.top[0].logprob - s.top[1].logprob for s in reference.steps]
    assert min(margins) > 0.5, f"prompt no longer has a large top-1 margin: {margins}"
    assert ours.summary.token_ids == reference.summary.token_ids
    for a, b in zip(ours.steps, reference.steps, strict=True):  # close, not equal: Q4_1 vs fp32
        assert abs(a.logprob - b.logprob) < 0.25


def test_processed_numbers_are_the_sampling_functions_on_llama_logits(
    llama: LlamaEngine,
) -> None:
    params = SamplingParams(
        temperature=0.7, top_k=40, top_p=0.9, min_p=0.02, repetition_penalty=1.2, seed=7,
        max_new_tokens=4, top_logprobs=10,
    )  # fmt: skip
    ids = llama.chat_ids([ChatMessage("user", "Name a colour.")])
    reply = llama.start_ids(ids, params)
    reply.prefill()
    step = reply.step()
    # the same logits straight from llama.cpp (a fresh context holds the same batch)
    from engine.decode.llama import SharedContext

    raw = SharedContext(llama.loaded.llm).run(list(ids))  # [vocab] float32
    seen = torch.zeros(raw.shape[0], dtype=torch.bool)
    seen[torch.tensor(ids)] = True
    processed = process(raw, params, seen)
    token = choose(processed, params, make_generator(torch.device("cpu"), params.seed))
    stats = summarize(raw, processed, token, params.top_logprobs)
    assert step.token_id == stats.token_id
    assert (step.logprob, step.rank, step.entropy) == (stats.logprob, stats.rank, stats.entropy)
    assert (step.processed_logprob, step.processed_rank, step.processed_entropy) == (
        stats.processed_logprob,
        stats.processed_rank,
        stats.processed_entropy,
    )
    assert [c.token_id for c in step.top] == list(stats.top_ids)
    assert [c.logprob for c in step.top] == list(stats.top_logprobs)
    assert [c.processed_logprob for c in step.top] == list(stats.top_processed_logprobs)


def test_rewind_and_restep_reproduce_the_logits(llama: LlamaEngine) -> None:
    reply = llama.start([ChatMessage("user", "Tell me about bees.")], _greedy(12))
    reply.prefill()
    first = [reply.step() for _ in range(8)]
    reply.rewind(3)
    again = [reply.step() for _ in range(3)]
    for a, b in zip(first[5:], again, strict=True):
        assert a.token_id == b.token_id
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.entropy == pytest.approx(b.entropy, abs=1e-4)
        assert [c.token_id for c in a.top] == [c.token_id for c in b.top]
        for x, y in zip(a.top, b.top, strict=True):
            assert x.logprob == pytest.approx(y.logprob, abs=1e-4)


def test_force_commits_the_chosen_token_with_its_numbers(llama: LlamaEngine) -> None:
    reply = llama.start([ChatMessage("user", "Say hi.")], _greedy(6))
    reply.prefill()
    proposal = reply.propose()
    second = proposal.top[1]
    step = reply.step(force=second.token_id)
    assert step.forced and step.token_id == second.token_id and step.rank == 2
    assert step.logprob == second.logprob
    assert reply.propose().index == 1


def test_cancel_stops_and_rewind_resumes(llama: LlamaEngine) -> None:
    cancel = threading.Event()
    reply = llama.start([ChatMessage("user", "Write a poem.")], _greedy(50), cancel=cancel)
    reply.prefill()
    reply.step()
    reply.step()
    cancel.set()
    assert reply.done and reply.finish_reason == "cancelled"
    assert reply.summary().completion_tokens == 2
    reply.rewind(1)
    assert not reply.done
    assert reply.step().index == 1


def test_interleaved_replies_share_the_context_correctly(llama: LlamaEngine) -> None:
    a_msgs = [ChatMessage("user", "What is 2+2?")]
    b_msgs = [ChatMessage("user", "Name a fruit.")]
    alone_a = run_reply(llama.start(a_msgs, _greedy(6))).summary.token_ids
    alone_b = run_reply(llama.start(b_msgs, _greedy(6))).summary.token_ids
    a, b = llama.start(a_msgs, _greedy(6)), llama.start(b_msgs, _greedy(6))
    a.prefill()
    b.prefill()
    while not (a.done and b.done):
        for reply in (a, b):
            if not reply.done:
                reply.step()
    assert a.summary().token_ids == alone_a and b.summary().token_ids == alone_b


def test_branch_from_a_stored_prefix_continues_the_same(llama: LlamaEngine) -> None:
    messages = [ChatMessage("user", "Count from 1 to 5.")]
    whole = run_reply(llama.start(messages, _greedy(8)))
    ids = whole.summary.token_ids
    branch = llama.start(messages, _greedy(8), prefix=ids[:3])
    rest = run_reply(branch)
    assert rest.steps[0].index == 3
    assert rest.summary.token_ids == ids


def test_bytes_of_every_token_concatenate_to_the_text(llama: LlamaEngine) -> None:
    ids = llama.encode(SPLIT_TEXT)
    assert ids == llama.llama_tokenize(SPLIT_TEXT)  # our tokenizer agrees with llama.cpp's
    reply = llama.start_ids(llama.encode("Say:"), _greedy(len(ids)))
    reply.prefill()
    steps = [reply.step(force=i) for i in ids]
    assert b"".join(s.token_bytes for s in steps) == SPLIT_TEXT.encode()
    assert "".join(s.text for s in steps) == SPLIT_TEXT


def test_token_bytes_match_llama_cpp_for_the_whole_vocabulary(llama: LlamaEngine) -> None:
    import ctypes

    import llama_cpp

    # llama.cpp's own piece of each token (llama_token_to_piece, special tokens as
    # written). Not `Llama.detokenize`: it gives b"" for the 47 pieces over 32 bytes.
    llm = llama.loaded.llm
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    buffer = ctypes.create_string_buffer(256)
    for token_id in range(llm.n_vocab()):
        size = llama_cpp.llama_token_to_piece(vocab, token_id, buffer, 256, 0, True)
        assert llama.token_bytes(token_id) == buffer.raw[:size], token_id


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "  leading spaces\tand tabs\n\nnewlines",
        "numbers 1234567 and 3.14159",
        "emoji 🙂🎉 and CJK 日本語",
        "<|im_start|>user\nhi<|im_end|>",
    ],
)
def test_tokenizer_agrees_with_llama_cpp(llama: LlamaEngine, text: str) -> None:
    special = "<|" in text
    assert llama.encode(text, allow_special=special) == llama.llama_tokenize(
        text, allow_special=special
    )
    assert llama.loaded.tokenizer_agrees


def test_info_shows_what_the_gguf_says(llama: LlamaEngine, real_model: Any) -> None:
    info = describe_llama(llama.loaded).to_dict()
    assert info["backend"] == "llama.cpp" and info["model_type"] == "llama"
    config = info["config"]
    assert (config["layers"], config["attention_heads"], config["kv_heads"]) == (30, 9, 3)
    assert config["context_length"] == 8192
    total = sum(p.numel() for p in real_model.model.parameters())
    assert info["parameters"]["total"] == total  # exact, from tensor shapes
    groups = info["gguf"]["tensor_groups"]
    assert groups["attn_q"]["types"] == {"Q4_1": 30} and groups["attn_q"]["tensors"] == 30
    assert info["gguf"]["file_size_bytes"] > 50_000_000 and info["gguf"]["file_type"] == "Q4_1"
    assert info["special_tokens"]["eos"]["token"] == "<|im_end|>"
    assert info["gguf"]["chat_template"] == info["gguf"]["chat_template_in_file"]


def test_prompt_view_renders_the_gguf_template(llama: LlamaEngine) -> None:
    view = llama.render_prompt([ChatMessage("user", "hi")])
    assert view.tokens[0].special and view.tokens[0].piece == "<|im_start|>"
    assert view.context_window == 8192


def test_description_names_the_backend(llama: LlamaEngine) -> None:
    from engine.decode import open_engine
    from engine.sessions.records import ModelRecord

    engine = open_engine(ModelSpec(backend="llama.cpp"))
    facts = engine.load(ModelSpec(backend="llama.cpp"))
    assert facts.backend == "llama.cpp" and facts.quantize == "Q4_1"
    assert ModelRecord.from_description(facts).device == "cpu (llama.cpp)"
    from engine.decode import TokenizerAccess, model_internals

    assert isinstance(engine, TokenizerAccess)
    from engine.errors import FeatureUnavailableError

    with pytest.raises(FeatureUnavailableError):
        model_internals(engine)


def test_served_equals_in_process(llama: LlamaEngine) -> None:
    import openai

    from engine.serve import ServeOptions, ServerThread, create_app

    facts = llama.load(ModelSpec(backend="llama.cpp", device="cpu"))
    messages = [ChatMessage("user", "What is the capital of France?")]
    local = run_reply(llama.start(messages, _greedy(16, top=5)))
    with ServerThread(create_app(llama, facts, ServeOptions(record=False))) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(
            model=facts.model_id,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            max_tokens=16,
            logprobs=True,
            top_logprobs=5,
        )
        stream = client.chat.completions.create(
            model=facts.model_id,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            max_tokens=16,
            stream=True,
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    content = reply.choices[0].logprobs.content
    assert [e.model_extra["token_id"] for e in content] == list(local.summary.token_ids)
    assert reply.choices[0].message.content == local.summary.text == streamed
    for entry, step in zip(content, local.steps, strict=True):
        assert entry.logprob == step.logprob


def test_a_looked_up_token_equals_what_the_step_recorded(llama: LlamaEngine) -> None:
    """The Step tab's look-up (`/`) on llama.cpp: one forward of its own over the shared
    context, equal to the recorded numbers of the chosen token and every candidate,
    with the reply's sampling settings (the same check as on transformers)."""
    from tests.test_probe import CHAT, SAMPLED, _check_steps_match

    result = run_reply(llama.start(CHAT, SAMPLED))
    _check_steps_match(llama, SAMPLED, list(result.steps))  # type: ignore[arg-type]


def test_prompt_surprisal_is_offered(llama: LlamaEngine) -> None:
    """llama.cpp scores prompts (tests/test_score.py checks the numbers)."""
    from engine.decode import full_distributions, prompt_scoring

    assert prompt_scoring(llama) is llama and full_distributions(llama) is llama
