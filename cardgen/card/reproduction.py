"""Code that reproduces a causal LM's perplexity and bits per byte with plain transformers + torch.

The card prints it under "Reproduce these numbers": a stranger with the model and the test texts gets the card's
numbers without cardgen. It is built from what run.json records of the token stream (``extra["stream"]``: per-text
tokenisation, separator, start token, window, stride), so it follows the card's numbers whatever the settings.
``tests/test_reproduction_snippet.py`` executes it on a tiny model and compares with the card.
"""

from __future__ import annotations

from typing import Any

from cardgen.record import RunRecord

TEMPLATE = '''import math

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

MODEL = "."  # this model: the directory of this card, or its Hub id
texts = [...]  # the {num_texts} texts of the {split} split, in order
tokenizer = AutoTokenizer.from_pretrained(MODEL)
model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()

# cardgen's token stream: every text tokenised on its own (no special tokens) with {separator} appended to all
# but the last, {start_comment}
ids = {first_ids}
for i, text in enumerate(texts):
    ids += tokenizer(text + ({separator} if i < len(texts) - 1 else ""), add_special_tokens=False)["input_ids"]
n_bytes = len({separator}.join(texts).encode("utf-8")){bytes_fix}
ids = torch.tensor(ids)

# Windows of {window} tokens advancing by {stride}: the first predicts all its tokens, each later one only its last
# (up to) {stride}; every token is predicted once.
window, stride = {window}, {stride}
nll, count, end = 0.0, 0, 0
with torch.no_grad():
    while end < len(ids):
        new_end = min(window if end == 0 else end + stride, len(ids))
        inputs = ids[max(0, new_end - window):new_end][None]
        labels = inputs.clone()
        labels[:, :inputs.shape[1] - (new_end - end)] = -100  # context: predicted by an earlier window
        n = int((labels[:, 1:] != -100).sum())
        nll += model(inputs, labels=labels).loss.item() * n
        count += n
        end = new_end
print(f"perplexity {{math.exp(nll / count):.4f}}, bits per byte {{nll / math.log(2) / n_bytes:.4f}}")
'''


def perplexity_code(record: RunRecord) -> dict[str, Any] | None:
    """The reproduction snippet of a causal LM's evaluation (None for other tasks or records without the stream).

    Returns:
        ``{"code", "split", "perplexity", "bits_per_byte"}``: the Python code, and the numbers it prints.
    """
    ev = record.evaluation
    stream = ev.extra.get("stream") if ev is not None and record.model.task == "causal-lm" else None
    if ev is None or not stream:
        return None
    separator = _quoted(str(stream["separator"]))
    if "start_token_id" in stream:
        first_ids = f"[{int(stream['start_token_id'])}]"
        start_comment = f"after one start token ({stream['start_token']}, id {int(stream['start_token_id'])}) that is context only."
        bytes_fix = ""
    else:
        first_ids = "[]"
        start_comment = "without a start token: the first token is context only."
        bytes_fix = "\nn_bytes -= len(tokenizer.decode(ids[:1]).encode(\"utf-8\"))  # the first token is not predicted"
    code = TEMPLATE.format(num_texts=ev.num_examples, split=ev.split, separator=separator,
                           start_comment=_one_line(start_comment), first_ids=first_ids, bytes_fix=bytes_fix,
                           window=int(stream["window"]), stride=int(stream["stride"]))
    return {"code": code, "split": ev.split, "perplexity": f"{ev.metrics['perplexity']:.4f}",
            "bits_per_byte": f"{ev.metrics['bits_per_byte']:.4f}"}


def _quoted(text: str) -> str:
    """A Python string literal of ``text`` in double quotes."""
    return '"' + repr(text)[1:-1].replace('"', '\\"') + '"' if "'" not in text else repr(text)


def _one_line(text: str) -> str:
    """A comment's text without line breaks or code fences (a token name from the tokenizer lands here)."""
    return " ".join(text.replace("```", "'''").split())
