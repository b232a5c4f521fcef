"""The evaluation engine used by run and compare.

Examples are sorted by length and batched with dynamic padding (little compute is spent on pad tokens), run under
``torch.inference_mode`` with no host synchronisation per batch (outputs stay on the device until the end), and
returned in the original order, so results equal plain unsorted evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cardgen.console import NullProgress, Progress

Features = Mapping[str, Sequence[int]]
StepFn = Callable[[Any, dict[str, Any]], dict[str, Any]]


@dataclass
class EngineResult:
    """Per-example outputs in the original order, plus what the run cost."""

    outputs: dict[str, np.ndarray]
    real_tokens: int
    processed_tokens: int
    seconds: float

    @property
    def padding_efficiency(self) -> float:
        """Real tokens / processed tokens (1.0 means no compute spent on padding)."""
        return self.real_tokens / self.processed_tokens if self.processed_tokens else 1.0


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (an out-of-memory shows at once)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(features: Sequence[Features], pad_values: dict[str, int]) -> dict[str, np.ndarray]:
    """Right-pad every key of ``features`` to the longest example of the batch."""
    width = max(len(f["input_ids"]) for f in features)
    out: dict[str, np.ndarray] = {}
    for key in features[0]:
        arr = np.full((len(features), width), pad_values.get(key, 0), dtype=np.int64)
        for row, feat in enumerate(features):
            values = feat[key]
            arr[row, : len(values)] = values
        out[key] = arr
    return out


def run_engine(
    model: Any,
    features: Sequence[Features],
    step: StepFn,
    *,
    batch_size: int = 32,
    pad_token_id: int = 0,
    extra: dict[str, Sequence[Any]] | None = None,
    progress: Progress | None = None,
    description: str = "Evaluating",
) -> EngineResult:
    """Run ``step`` over all examples in length-sorted batches and return per-example outputs in input order.

    Args:
        model: A torch module, already on its device and in eval mode.
        features: One dict per example of token-id lists (input_ids, attention_mask, token_type_ids, ...).
        step: ``step(model, batch) -> {name: tensor of shape [batch, ...]}``; same trailing shape every batch.
        batch_size: Examples per forward pass.
        pad_token_id: The pad id for input_ids (attention_mask pads with 0, labels with -100).
        extra: Per-example values (e.g. labels) passed to ``step`` as tensors in the batch under their key.
        progress: Where to report batches done.
        description: The progress bar's label.
    """
    import torch

    progress = progress or NullProgress()
    device = next(model.parameters()).device
    lengths = [len(f["input_ids"]) for f in features]
    batches = length_sorted_batches(lengths, batch_size)
    pad_values = {"input_ids": pad_token_id, "labels": -100}
    collected: dict[str, list[Any]] = {}
    order: list[int] = []
    processed = 0
    start = time.perf_counter()
    progress.start_task(description, total=len(batches))
    with torch.inference_mode():
        for idx in batches:
            arrays = pad_batch([features[i] for i in idx], pad_values)
            processed += arrays["input_ids"].size
            batch = {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in arrays.items()}
            for key, values in (extra or {}).items():
                batch[key] = torch.as_tensor(np.asarray([values[i] for i in idx])).to(device, non_blocking=True)
            out = step(model, batch)
            for key, tensor in out.items():
                collected.setdefault(key, []).append(tensor.detach())
            order.extend(idx)
            progress.advance(1)
    progress.end_task()
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    outputs = {}
    for key, parts in collected.items():
        # One transfer at the end: the only host synchronisation of the whole evaluation.
        merged = torch.cat([p.float() if p.is_floating_point() else p for p in parts]).cpu().numpy()
        outputs[key] = merged[inverse]
    return EngineResult(outputs=outputs, real_tokens=int(sum(lengths)), processed_tokens=int(processed),
                        seconds=time.perf_counter() - start)
