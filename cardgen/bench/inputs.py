"""Inputs and precision of the benchmark: seeded synthetic ids, real-text batches, and autocast choices.

The module imports neither torch nor transformers at import time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from cardgen.bench.timing import is_cuda
from cardgen.environment import cpu_has_native_bf16 as _cpu_has_native_bf16
from cardgen.errors import ConfigError, ModelError

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


# --------------------------------------------------------------------------------------------------- precision
def autocast_dtype(precision: str, device: Any) -> Any:
    """The autocast dtype for ``precision`` on ``device`` (None for fp32).

    bf16 and fp16 autocast run on CUDA; on CPU only bf16, and only where the CPU computes bf16 natively
    (AVX512-BF16, AMX, or Arm bf16): elsewhere it is emulated and slower than fp32, which would mislead.

    Raises:
        ConfigError: An unknown precision, or one the device cannot run.
    """
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"`benchmark.precision` must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if precision == "fp32":
        return None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if is_cuda(device):
        if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
            raise ConfigError(
                "`benchmark.precision` bf16: this GPU has no native bf16", hint="use fp16 or fp32 on this GPU"
            )
        return dtype
    if precision == "fp16":
        raise ConfigError(
            "`benchmark.precision` fp16 autocast is for GPUs",
            hint="use bf16 (where supported) or fp32 on CPU",
        )
    if not _cpu_has_native_bf16():
        raise ConfigError(
            "`benchmark.precision` bf16: this CPU has no native bf16 (AVX512-BF16, AMX or Arm bf16)",
            hint="use fp32 on this machine",
        )
    return dtype


def autocast_context(device: Any, dtype: Any) -> AbstractContextManager[Any]:
    import torch

    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type="cuda" if is_cuda(device) else "cpu", dtype=dtype)


# --------------------------------------------------------------------------------------------------- inputs
def synthetic_ids(batch_size: int, length: int, vocab_size: int, *, seed: int = 0) -> np.ndarray:
    """Random token ids in ``[0, vocab_size)``, shape ``[batch_size, length]``, the same for every model.

    Row ``i`` is the same for every batch size (one seeded matrix, sliced), so batch sizes see the same rows.
    """
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab_size, size=(batch_size, length), dtype=np.int64)


def input_names(tokenizer: Any) -> list[str]:
    names = list(getattr(tokenizer, "model_input_names", None) or ["input_ids", "attention_mask"])
    return [n for n in names if n in ("input_ids", "attention_mask", "token_type_ids")]


def pad_id_of(tokenizer: Any, model: Any) -> int:
    for source in (tokenizer, getattr(model, "generation_config", None), getattr(model, "config", None)):
        for attr in ("pad_token_id", "eos_token_id"):
            value = getattr(source, attr, None) if source is not None else None
            if isinstance(value, list):
                value = value[0] if value else None
            if isinstance(value, int):
                return value
    return 0


def synthetic_batch(ids: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    batch = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if "token_type_ids" in names:
        batch["token_type_ids"] = np.zeros_like(ids)
    return batch


def text_batch(
    texts: Sequence[str], batch_size: int, max_length: int, tokenizer: Any, pad_id: int, *, left: bool = False
) -> dict[str, np.ndarray]:
    """The first ``batch_size`` texts (cycled), truncated and padded to the batch's longest, without touching the
    tokenizer's own padding settings (a causal LM's tokenizer often has no pad token)."""
    if tokenizer is None:
        raise ConfigError(
            "benchmarking on texts needs a tokenizer for every model", hint="pass (model, tokenizer)"
        )
    chosen = [texts[i % len(texts)] for i in range(batch_size)]
    enc = tokenizer(chosen, truncation=True, max_length=max_length, padding=False)
    names = input_names(tokenizer)
    width = max(len(x) for x in enc["input_ids"])
    out = {
        "input_ids": np.full((batch_size, width), pad_id, dtype=np.int64),
        "attention_mask": np.zeros((batch_size, width), dtype=np.int64),
    }
    if "token_type_ids" in names:
        out["token_type_ids"] = np.zeros((batch_size, width), dtype=np.int64)
    for row, ids in enumerate(enc["input_ids"]):
        cols = slice(width - len(ids), width) if left else slice(0, len(ids))
        out["input_ids"][row, cols] = ids
        out["attention_mask"][row, cols] = 1
        if "token_type_ids" in out and "token_type_ids" in enc:
            out["token_type_ids"][row, cols] = enc["token_type_ids"][row]
    return out


def to_device(batch: Mapping[str, np.ndarray], device: Any) -> dict[str, Any]:
    import torch

    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


def shared_vocab_size(models: Mapping[str, tuple[Any, Any]]) -> int:
    sizes = []
    for model, tokenizer in models.values():
        size = getattr(getattr(model, "config", None), "vocab_size", None)
        if isinstance(size, int):
            sizes.append(size)
        if tokenizer is not None:
            sizes.append(len(tokenizer))
    if not sizes:
        raise ModelError(
            "cannot tell the vocabulary size of the models", hint="pass a tokenizer with each model"
        )
    return min(sizes)
