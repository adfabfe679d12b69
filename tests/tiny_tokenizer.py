"""A small byte-level BPE tokenizer with a ChatML template, built offline in a second.

The tiny random Llama in conftest.py uses it instead of the bundled SmolLM2 tokenizer,
so the fast tests (``-m "not real_model"``) never open the bundled model. It is shaped
like SmolLM2's: byte-level BPE (any text encodes, pieces map to bytes), the same three
special tokens at the same ids (``<|endoftext|>`` 0, ``<|im_start|>`` 1, ``<|im_end|>``
2) and the same ChatML template with a default system prompt.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 1024

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named Tiny<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Fixed text, so the vocabulary (and every id a test sees) is the same on every run.
CORPUS = """\
Hello there, how are you today? Hello world. Hi there! What is the capital of France?
The capital of France is Paris. Paris is a city in France, on the river Seine.
One two three four five six seven eight nine ten. Count with me: one, two, three.
The quick brown fox jumps over the lazy dog. A language model predicts the next token
from the tokens before it; the workbench shows each step, its probability and the
candidates it did not choose. Tokens have ids, pieces and bytes; text is derived.
Once upon a time there was a small model that learned to write short stories about
the sea, the mountains and the people who lived between them. Go on, tell me more.
Write a poem about the moon. Explain how a tokenizer works. Why is the sky blue?
Temperature, top-k, top-p and min-p shape the distribution before sampling. Greedy
decoding always takes the most likely token. The end of a reply is a stop token.
I think, therefore I am. To be or not to be, that is the question. Good morning!
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024. Symbols: ( ) [ ] { } < > = + - * / % .
Unicode: café, naïve, résumé, 東京, Привет, 🙂. Code: def main(): return print("hi")
"""


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """The tokenizer, trained on CORPUS (deterministic, no network)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines() * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=256,
    )


def save_tiny_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    tokenizer = build_tiny_tokenizer()
    tokenizer.save_pretrained(directory)
    return tokenizer
