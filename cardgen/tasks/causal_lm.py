"""Causal language modelling: fine-tune on a text column; perplexity and bits per byte over the whole eval text.

The texts of a split are joined with a blank line into one token stream. Training cuts the stream into blocks of
``block_size`` tokens. Evaluation scores every token of the stream exactly once with a sliding window: the first
window predicts its ``block_size - 1`` tokens, each later window advances by ``stride`` tokens and predicts only
those, seeing the ``block_size - stride`` tokens before them as context. One start token (BOS, else EOS) is put
in front as context only, so every token of the text is predicted and bits per byte covers every byte.

    perplexity    = exp(total NLL / predicted tokens)      (never the mean of per-text perplexities)
    bits_per_byte = total NLL / ln 2 / UTF-8 bytes of the text

The same windows serve the per-epoch validation rows (Trainer ``compute_metrics``) and the final evaluation, so
the numbers in the per-epoch table and in the results mean the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cardgen.config import RunConfig
from cardgen.console import NullProgress, Progress
from cardgen.data import (
    PreparedData,
    check_texts,
    load_frames,
    make_split_record,
    new_data_record,
    require_columns,
    split_and_subsample,
    token_length_stats,
)
from cardgen.errors import ConfigError
from cardgen.models import LoadedModel, load_pretrained
from cardgen.record import EvaluationRecord
from cardgen.tasks import instruction

if TYPE_CHECKING:
    import pandas as pd

NAME = "causal-lm"
PIPELINE_TAG = "text-generation"
DEFAULT_METRIC = "perplexity"
GREATER_IS_BETTER = False
SEPARATOR = "\n\n"  # between the texts of a split, as in the transformers perplexity guide


# ---------------------------------------------------------------------------------------------------------------
# Data


def prepare_text_data(cfg: RunConfig, tokenizer: Any, need_train: bool, max_length: int,
                      add_special_tokens: bool) -> PreparedData:
    """Load, check, split and describe a text-only data set (shared with masked LM).

    ``max_length`` is only used to count the examples longer than it (``num_truncated``); pass a huge value when
    nothing is truncated.
    """
    d = cfg.data
    frames, sources, files = load_frames(d)
    for split, frame in frames.items():
        require_columns(frame, [d.text_column], split, sources[split])
        check_texts(frame, d.text_column, split, sources[split])
        frames[split] = frame[[d.text_column]].rename(columns={d.text_column: "text"}).reset_index(drop=True)
    frames = split_and_subsample(frames, sources, d, None, need_train)
    records = {}
    for split, frame in frames.items():
        lengths = [len(ids) for ids in tokenizer(frame["text"].tolist(), add_special_tokens=add_special_tokens,
                                                  truncation=False)["input_ids"]]
        records[split] = make_split_record(split, frame, sources[split],
                                           num_truncated=int(sum(n > max_length for n in lengths)),
                                           token_length=token_length_stats(lengths))
    record = new_data_record(d, [], records, files, None)
    record.max_length = max_length
    return PreparedData(frames=frames, label_names=[], record=record)


def context_limit(tokenizer: Any, model_config: Any = None) -> int | None:
    """The longest input the model accepts (position embeddings), else the tokenizer's limit, else None."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(model_config, key, None) if model_config is not None else None
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else None


def block_size(cfg: RunConfig) -> int:
    """Training block and evaluation window: ``lm.block_size``, default ``data.max_length``."""
    return cfg.lm.block_size or cfg.data.max_length


def window_step(cfg: RunConfig, size: int) -> int:
    """New tokens predicted per evaluation window: ``lm.stride`` (default half the window), at most size - 1 so
    every predicted token has context."""
    return max(1, min(cfg.lm.stride or size // 2, size - 1))


def prepare_data(cfg: RunConfig, tokenizer: Any, need_train: bool, model_config: Any = None) -> PreparedData:
    """Text splits for causal LM; nothing is truncated (windows cover every token)."""
    if cfg.instruction.enabled:  # prompt/completion or chat data: cardgen.tasks.instruction
        return instruction.prepare_data(cfg, tokenizer, need_train, model_config)
    size = block_size(cfg)
    limit = context_limit(tokenizer, model_config)
    if limit is not None and size > limit:
        raise ConfigError(f"`lm.block_size` {size} is longer than the model's context ({limit} tokens)",
                          f"set lm.block_size (or data.max_length) to at most {limit}")
    data = prepare_text_data(cfg, tokenizer, need_train, max_length=10**12, add_special_tokens=False)
    data.record.max_length = size
    return data


@dataclass
class TokenStream:
    """The texts of a split as one token stream: ids, which text each token belongs to, bytes of each text."""

    ids: np.ndarray  # int64 token ids, without the start token
    doc: np.ndarray  # index of the text each token belongs to (a separator belongs to the text before it)
    doc_bytes: np.ndarray  # UTF-8 bytes of each text, its separator included
    doc_tokens: np.ndarray  # tokens of each text, its separator included


def token_stream(texts: list[str], tokenizer: Any) -> TokenStream:
    """Tokenise ``texts`` joined by :data:`SEPARATOR` (each text with its separator, no special tokens)."""
    pieces = [t + SEPARATOR if i < len(texts) - 1 else t for i, t in enumerate(texts)]
    encoded = tokenizer(pieces, add_special_tokens=False)["input_ids"] if pieces else []
    lengths = np.asarray([len(e) for e in encoded], dtype=np.int64)
    ids = np.fromiter((t for e in encoded for t in e), dtype=np.int64, count=int(lengths.sum()))
    doc = np.repeat(np.arange(len(pieces), dtype=np.int64), lengths)
    doc_bytes = np.asarray([len(p.encode("utf-8")) for p in pieces], dtype=np.int64)
    return TokenStream(ids=ids, doc=doc, doc_bytes=doc_bytes, doc_tokens=lengths)


def start_token_id(tokenizer: Any) -> int | None:
    """The context-only token put in front of the stream (BOS, else EOS; None when the tokenizer has neither)."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return None


def windows(length: int, size: int, step: int) -> list[tuple[int, int, int]]:
    """``(begin, end, n_targets)`` of each window over ``length`` ids: the last ``n_targets`` ids of
    ``ids[begin:end]`` are predicted; together the windows predict ids 1 .. length-1 exactly once."""
    if length < 2:
        return []
    end = min(size, length)
    out = [(0, end, end - 1)]
    while end < length:
        new_end = min(end + step, length)
        out.append((max(0, new_end - size), new_end, new_end - end))
        end = new_end
    return out


def window_features(ids: np.ndarray, size: int, step: int) -> list[dict[str, list[int]]]:
    """One feature per window: input ids, attention mask, and labels (-100 on the context-only positions)."""
    feats = []
    for begin, end, n_targets in windows(len(ids), size, step):
        chunk = ids[begin:end].tolist()
        labels = [-100] * (len(chunk) - n_targets) + chunk[len(chunk) - n_targets:]
        feats.append({"input_ids": chunk, "attention_mask": [1] * len(chunk), "labels": labels})
    return feats


def _with_start(stream: TokenStream, tokenizer: Any) -> tuple[np.ndarray, bool]:
    start = start_token_id(tokenizer)
    if start is None:
        return stream.ids, False
    return np.concatenate([np.asarray([start], dtype=np.int64), stream.ids]), True


def train_dataset(frame: pd.DataFrame, tokenizer: Any, cfg: RunConfig, split: str) -> Any:
    """Training: the stream cut into blocks. Validation: the evaluation windows, so the per-epoch perplexity is
    computed exactly as the final one."""
    import datasets

    if cfg.instruction.enabled:
        return instruction.train_dataset(frame, tokenizer, cfg, split)
    size = block_size(cfg)
    stream = token_stream(frame["text"].tolist(), tokenizer)
    if split == "train":
        ids = stream.ids.tolist()
        blocks = [ids[i:i + size] for i in range(0, len(ids), size)]
        blocks = [b for b in blocks if len(b) >= 2]
        rows = [{"input_ids": b, "attention_mask": [1] * len(b), "labels": list(b)} for b in blocks]
    else:
        ids, _ = _with_start(stream, tokenizer)
        rows = window_features(ids, size, window_step(cfg, size))
    if not rows:
        from cardgen.errors import DataError

        raise DataError(f"the {split} split has too little text for one block", "add text to that split")
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in rows[0]})


class PadCollator:
    """Right-pads input ids (pad token), attention masks (0) and labels (-100) to the longest in the batch."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        pads = {"input_ids": self.pad_token_id, "labels": -100}
        batch = {}
        for key in features[0]:
            rows = [list(f[key]) + [pads.get(key, 0)] * (width - len(f[key])) for f in features]
            batch[key] = torch.tensor(rows, dtype=torch.long)
        return batch


def collator(tokenizer: Any, cfg: RunConfig) -> Any:
    """Padding only: training blocks and validation windows carry their labels."""
    return PadCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


def load_model(cfg: RunConfig, label_names: list[str] | None = None, model_cfg: Any = None,
               tokenizer: Any = None) -> LoadedModel:
    """The checkpoint with its language-modelling head (GGUF files load dequantised)."""
    from transformers import AutoModelForCausalLM

    return load_pretrained(AutoModelForCausalLM, model_cfg or cfg.model, tokenizer=tokenizer)


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def token_nll(logits: Any, labels: Any) -> Any:
    """Per-position NLL (float32, nats): entry ``j`` is -log p(labels[j] | ids[:j]); 0 where nothing is predicted
    (position 0 and labels of -100)."""
    import torch
    import torch.nn.functional as F

    out = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
    if labels.shape[1] > 1:
        flat = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                               ignore_index=-100, reduction="none")
        out[:, 1:] = flat.view(labels.shape[0], -1)
    return out


def preprocess_logits_for_metrics(logits: Any, labels: Any) -> Any:
    """For the Trainer: per-position NLL instead of the full logits (a vocabulary-wide tensor per token)."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return token_nll(logits, labels)


def _nll_totals(predictions: Any, labels: np.ndarray) -> tuple[float, int]:
    """Total NLL and predicted tokens from Trainer predictions: full logits, or per-position NLL when the Trainer
    ran :func:`preprocess_logits_for_metrics`."""
    import torch

    preds = predictions[0] if isinstance(predictions, tuple) else predictions
    target = labels.copy()
    target[:, 0] = -100
    mask = target != -100
    if preds.ndim == 2:
        return float(np.asarray(preds, dtype=np.float64)[mask].sum()), int(mask.sum())
    total = 0.0
    for i in range(0, len(preds), 8):  # a few windows at a time: logits span the whole vocabulary
        nll = token_nll(torch.from_numpy(np.asarray(preds[i:i + 8])), torch.from_numpy(labels[i:i + 8]))
        total += float(nll.double()[torch.from_numpy(mask[i:i + 8])].sum())
    return total, int(mask.sum())


def trainer_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """Extra Trainer arguments: on instruction data, validation keeps per-position NLL instead of logits."""
    return instruction.trainer_kwargs(cfg) if cfg.instruction.enabled else {}


def trainer_metrics(cfg: RunConfig, label_names: list[str]) -> Any:
    """``compute_metrics``: token-weighted validation perplexity over the evaluation windows."""

    def compute(eval_pred: Any) -> dict[str, float]:
        labels = np.asarray(eval_pred.label_ids)
        total, count = _nll_totals(eval_pred.predictions, labels)
        return {"perplexity": math.exp(total / count) if count else float("nan")}

    return compute


def stream_nll(model: Any, ids: np.ndarray, size: int, step: int, *, batch_size: int = 8, pad_token_id: int = 0,
               progress: Progress | None = None, description: str = "Scoring") -> tuple[np.ndarray, np.ndarray]:
    """NLL of every id of ``ids`` given the ones before it in its window (sliding-window evaluation).

    Returns:
        ``(nll, predicted)``: float64 NLL per position (0 where not predicted) and a boolean mask of the
        predicted positions (all but position 0).
    """
    from cardgen.engine import run_engine
    from cardgen.tasks.token_nll import token_nll_step

    feats = window_features(ids, size, step)
    nll = np.zeros(len(ids), dtype=np.float64)
    predicted = np.zeros(len(ids), dtype=bool)
    if not feats:
        return nll, predicted

    # The output head runs only where a token is predicted (after the first window, the last `step` positions of
    # each window), in small chunks: the same numbers as full logits, without the work on context positions.
    step_fn = token_nll_step(model, size)
    result = run_engine(model, feats, step_fn, batch_size=batch_size, pad_token_id=pad_token_id,
                        progress=progress, description=description)
    for (begin, end, n_targets), row in zip(windows(len(ids), size, step), result.outputs["nll"], strict=True):
        width = end - begin
        nll[end - n_targets:end] = row[width - n_targets:width]
        predicted[end - n_targets:end] = True
    return nll, predicted


def generate(loaded: LoadedModel, prompts: list[str], max_new_tokens: int) -> list[dict[str, str]]:
    """Greedy continuations of ``prompts`` (new text only, special tokens dropped)."""
    import torch
    from transformers import GenerationConfig

    tok, model = loaded.tokenizer, loaded.model
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None) or tok.eos_token_id
    gen_cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                               pad_token_id=tok.pad_token_id, eos_token_id=eos)
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for prompt in prompts:
            enc = tok(prompt, return_tensors="pt").to(device)
            generated = model.generate(**enc, generation_config=gen_cfg)
            text = tok.decode(generated[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out.append({"prompt": prompt, "output": text})
    return out


def evaluate(loaded: LoadedModel, frame: pd.DataFrame, cfg: RunConfig, label_names: list[str], name: str,
             split: str, progress: Progress | None = None) -> EvaluationRecord:
    """Perplexity and bits per byte over the whole split as one text, plus greedy generations of the prompts."""
    import time

    if cfg.instruction.enabled:
        return instruction.evaluate(loaded, frame, cfg, label_names, name, split, progress)
    progress = progress or NullProgress()
    start_time = time.perf_counter()
    tok = loaded.tokenizer
    size = block_size(cfg)
    step = window_step(cfg, size)
    stream = token_stream(frame["text"].tolist(), tok)
    ids, has_start = _with_start(stream, tok)
    nll, predicted = stream_nll(loaded.model, ids, size, step, batch_size=cfg.evaluation.batch_size,
                                pad_token_id=tok.pad_token_id or 0, progress=progress,
                                description=f"Perplexity of {name} on {split}")
    offset = 1 if has_start else 0
    doc = stream.doc
    doc_nll = np.bincount(doc, weights=nll[offset:], minlength=len(stream.doc_bytes))
    doc_pred = np.bincount(doc, weights=predicted[offset:].astype(np.float64), minlength=len(stream.doc_bytes))
    total, count = float(nll.sum()), int(predicted.sum())
    # Bytes of the predicted text: all of it with a start token, else all but the first token's text.
    total_bytes = int(stream.doc_bytes.sum())
    if not has_start and len(stream.ids):
        total_bytes -= len(tok.decode(stream.ids[:1].tolist()).encode("utf-8"))
    metrics = {
        "perplexity": math.exp(total / count) if count else float("nan"),
        "bits_per_byte": total / math.log(2) / total_bytes if total_bytes else float("nan"),
        "loss": total / count if count else float("nan"),
    }
    generations = generate(loaded, list(cfg.lm.prompts), cfg.lm.max_new_tokens) if cfg.lm.prompts else []
    start = int(ids[0]) if has_start else None
    stream_args = token_stream_args(tok, start, size, step)
    method = stream_method(len(frame), split, stream_args, len(ids), count, total_bytes)
    return EvaluationRecord(
        model=name, split=split, num_examples=len(frame), metrics=metrics,
        losses=[round(float(x), 6) for x in doc_nll], runtime_s=round(time.perf_counter() - start_time, 3),
        extra={
            "tokens": [int(x) for x in doc_pred], "bytes": [int(x) for x in stream.doc_bytes],
            "total_nll": total, "predicted_tokens": count, "total_bytes": total_bytes, "block_size": size,
            "stride": step, "start_token": bool(has_start), "separator": SEPARATOR, "method": method,
            "generations": generations, "max_new_tokens": cfg.lm.max_new_tokens, "stream": stream_args,
        },
    )


def token_stream_args(tokenizer: Any, start: int | None, size: int, step: int) -> dict[str, Any]:
    """The evaluation's token stream, exactly (the card's method line, its reproduction code and the metric's
    model-index ``args``): how the texts were tokenised and joined, the start token, the window and the stride."""
    args: dict[str, Any] = {"tokenization": "each text on its own, no special tokens, separator appended to all "
                                            "but the last", "separator": SEPARATOR}
    if start is not None:
        args.update(start_token=tokenizer.convert_ids_to_tokens(start), start_token_id=start)
    args.update(window=size, stride=step)
    return args


def stream_method(num_texts: int, split: str, stream: dict[str, Any], num_ids: int, count: int,
                  total_bytes: int) -> str:
    """The card's sentence on how perplexity and bits per byte were computed, naming the token stream exactly."""
    size, step = stream["window"], stream["stride"]
    start = (f"after one start token `{stream['start_token']}` (id {stream['start_token_id']}) that is context only"
             if "start_token_id" in stream else "without a start token (the first token is context only)")
    return (f"Perplexity = exp(total NLL / predicted tokens) over one token stream of all {num_texts} {split} texts: "
            f"each text tokenised on its own without special tokens, with `{_shown(stream['separator'])}` appended "
            f"to every text but the last, {start} ({num_ids:,} tokens, {count:,} predicted, {total_bytes:,} bytes). "
            f"Sliding window of {size} tokens advancing by {step} (each token predicted once, with at least "
            f"{size - step} tokens of context after the first window); bits per byte = total NLL / ln 2 / bytes. "
            "Tokenising the joined text in one call (as the transformers perplexity guide does) gives a slightly "
            "different stream, so a different perplexity; bits per byte moves much less. The code under "
            "*Reproduce these numbers* recomputes both.")


def _shown(text: str) -> str:
    """A separator as Python writes it inside quotes (a blank line is ``\\n\\n``)."""
    return repr(text)[1:-1]


def fresh_weights(loaded: LoadedModel) -> str:
    """The first weights transformers initialised fresh, for messages: "a, b, c ..."."""
    fresh = loaded.newly_initialized
    return ", ".join(fresh[:3]) + (" ..." if len(fresh) > 3 else "")


def base_caveat(loaded: LoadedModel, head: str) -> str | None:
    """Why the base model's numbers mean nothing, when transformers initialised part of it fresh."""
    if not loaded.newly_initialized:
        return None
    shown = fresh_weights(loaded)
    return (f"the base checkpoint has no trained {head} ({len(loaded.newly_initialized)} weights newly initialised: "
            f"{shown}), so they describe a randomly initialised {head}")


def mark_base(ev: EvaluationRecord, loaded: LoadedModel, head: str) -> EvaluationRecord:
    """Record in ``ev.extra`` whether the base numbers are meaningful."""
    note = base_caveat(loaded, head)
    ev.extra["meaningful"] = note is None
    if note:
        ev.extra["note"] = note
    return ev


def evaluate_base(loaded: LoadedModel, frame: pd.DataFrame, cfg: RunConfig, label_names: list[str], split: str,
                  progress: Progress | None = None) -> EvaluationRecord:
    """The base model, evaluated before fine-tuning exactly as the fine-tuned one is afterwards."""
    ev = evaluate(loaded, frame, cfg, label_names, "base", split, progress)
    return mark_base(ev, loaded, "language-modelling head")


