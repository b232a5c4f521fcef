"""The evaluation engine used by run and compare.

Examples are sorted by length (longest first) and batched with dynamic padding, so little compute is spent on pad
tokens; the model runs under ``torch.inference_mode`` with SDPA attention where the architecture has it; outputs
stay on the device until the end (one host transfer, no synchronisation per batch); results come back in the
original order, so they equal plain unsorted evaluation.

Batches are bounded by tokens: no batch holds more padded tokens than ``batch_size`` examples of the longest
length, so memory never exceeds what that first batch needs, while short examples come many to a batch. On a CPU
the cut points are planned up front to minimise the work: padded tokens plus the fixed cost of each forward call
(:func:`min_cost_batches`, a call counted as :data:`CALL_TOKENS` tokens), so a batch never mixes very different
lengths just because they fit. Elsewhere every later batch holds as many examples as fit in the first batch's
padded tokens, and on CUDA the engine grows that budget to the largest batch that fits: the allocator's peak
during the first batch is scaled to the free memory. A batch that still runs out of memory is split in half and
retried, on any device.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, cast

import numpy as np

from cardgen.console import NullProgress, Progress
from cardgen.sharding import current_shard

Features = Mapping[str, Sequence[int]]
StepFn = Callable[[Any, dict[str, Any]], dict[str, Any]]

# Share of the free device memory the automatic batch may fill (the rest absorbs fragmentation and estimate error).
CUDA_MEMORY_FRACTION = 0.6
MAX_ROWS = 1024  # examples per batch at most when batches are packed by tokens


@dataclass
class EngineResult:
    """Per-example outputs in the original order, plus what the run cost."""

    outputs: dict[str, np.ndarray]
    real_tokens: int  # sum of the examples' lengths
    processed_tokens: int  # sum over batches of rows x padded width: what the model computed
    seconds: float
    num_batches: int = 0
    max_batch_size: int = 0  # largest batch that ran (grows above the requested size on CUDA)

    @property
    def padding_efficiency(self) -> float:
        """Real tokens / processed tokens (1.0 means no compute spent on padding)."""
        return self.real_tokens / self.processed_tokens if self.processed_tokens else 1.0


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices by length, longest first, ties in input order (stable, so runs are reproducible)."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (an out-of-memory shows at once)."""
    order = length_order(lengths)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def token_budget_batches(order: Sequence[int], lengths: Sequence[int], max_tokens: int, min_rows: int = 1,
                         max_rows: int | None = None) -> list[list[int]]:
    """Cut ``order`` (longest first) into batches whose padded size (rows x longest) stays within ``max_tokens``.

    Every batch has at least ``min_rows`` rows (when that many remain) and at most ``max_rows``.
    """
    batches: list[list[int]] = []
    i = 0
    while i < len(order):
        width = max(1, lengths[order[i]])
        rows = max(min_rows, max_tokens // width, 1)
        if max_rows is not None:
            rows = min(rows, max_rows)
        batches.append(list(order[i : i + rows]))
        i += rows
    return batches


def min_cost_batches(order: Sequence[int], lengths: Sequence[int], max_tokens: int,
                     call_tokens: int = 32, max_rows: int | None = None) -> list[list[int]]:
    """Cut ``order`` (longest first) into the batches that minimise processed tokens plus ``call_tokens`` per batch.

    A batch of ``rows`` examples padded to its longest, ``width``, costs ``rows x width`` tokens of work plus the
    fixed cost of a forward call, counted as ``call_tokens`` tokens. Exact dynamic programming over the cut points
    (O(n x max_rows), vectorised); every batch stays within ``max_tokens`` padded tokens (memory) and ``max_rows``
    rows. ``call_tokens = 0`` gives one batch per distinct length (no padding at all), a huge value few full batches.
    """
    n = len(order)
    if n == 0:
        return []
    width = np.asarray([max(1, lengths[i]) for i in order], dtype=np.int64)
    cap = min(n, max_rows or MAX_ROWS)
    cost = np.zeros(n + 1, dtype=np.float64)
    back = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        begin = np.arange(max(0, end - cap), end)
        work = (end - begin) * width[begin]  # width[begin] is the batch's longest: lengths descend
        total = cost[begin] + work + call_tokens
        total[(work > max_tokens) & (begin < end - 1)] = np.inf  # a single example always fits
        best = int(np.argmin(total))
        cost[end], back[end] = total[best], begin[best]
    cuts, end = [], n
    while end > 0:
        cuts.append((int(back[end]), end))
        end = int(back[end])
    return [list(order[a:b]) for a, b in reversed(cuts)]


def planned_batches(lengths: Sequence[int], batch_size: int, pack: bool = True) -> list[list[int]]:
    """The batches :func:`run_engine` forms on a CPU: longest examples first, cut by :func:`min_cost_batches` within
    the padded tokens of ``batch_size`` longest examples (``pack``), or ``batch_size`` examples each. Every process
    of a sharded evaluation computes this same plan."""
    order = length_order(lengths)
    rows = max(1, int(batch_size))
    if not pack or not order:
        return [order[i : i + rows] for i in range(0, len(order), rows)]
    return min_cost_batches(order, lengths, rows * max(1, lengths[order[0]]), CALL_TOKENS)


def padding_efficiency(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Real tokens / processed tokens of a batching, computed from the lengths alone."""
    processed = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    return sum(lengths) / processed if processed else 1.0


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


@contextlib.contextmanager
def sdpa_attention(model: Any) -> Iterator[None]:
    """Run ``model`` with PyTorch's scaled-dot-product attention when it was loaded with eager attention and its
    architecture supports SDPA; the previous setting is restored afterwards."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    switch = (current == "eager" and getattr(model, "_supports_sdpa", False)
              and hasattr(model, "set_attn_implementation"))
    if switch:
        try:
            model.set_attn_implementation("sdpa")
        except (ValueError, ImportError):  # transformers refuses SDPA for this model: keep eager
            switch = False
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(current)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator failure (CUDA or host) that a smaller batch may avoid."""
    import torch

    # torch.OutOfMemoryError is torch >= 2.5; torch.cuda.OutOfMemoryError is the same class there and older too.
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def _cuda_token_budget(device: Any, tokens: int, peak_bytes: int, rows: int) -> int:
    """Tokens per batch that fit into :data:`CUDA_MEMORY_FRACTION` of the free memory, scaled from one batch's
    peak (activations grow about linearly with tokens under SDPA)."""
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    if peak_bytes <= 0:
        return tokens
    scale = max(1.0, CUDA_MEMORY_FRACTION * free / peak_bytes)
    return int(tokens * min(scale, MAX_ROWS / max(1, rows)))


def _reset_peak(device: Any) -> int:
    """Start measuring the allocator's peak on a CUDA device; the bytes allocated now."""
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return int(torch.cuda.memory_allocated(device))


def _peak_since(device: Any, before: int) -> int:
    """Peak bytes allocated on a CUDA device since :func:`_reset_peak`, above what was there before."""
    import torch

    return int(torch.cuda.max_memory_allocated(device)) - before


def _halved(device: Any, rows: int, width: int, budget: int | None) -> tuple[int, int | None, bool]:
    """After an out-of-memory error on ``rows`` examples of ``width`` tokens: (rows, token budget, grow) for the
    retry with half as many; the cache is emptied on CUDA and the budget never grows again."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    rows = max(1, rows // 2)
    return rows, None if budget is None else rows * width, False


def _on_device(arrays: dict[str, np.ndarray], device: Any) -> dict[str, Any]:
    """Host arrays as tensors on ``device``; on CUDA through pinned memory, so the copy overlaps with compute."""
    import torch

    if device.type != "cuda":
        return {k: torch.from_numpy(v) for k, v in arrays.items()}
    return {k: torch.from_numpy(v).pin_memory().to(device, non_blocking=True) for k, v in arrays.items()}


def _in_input_order(collected: dict[str, list[Any]], done: list[int]) -> dict[str, np.ndarray]:
    """Each output's batches concatenated and put back in input order (``done``: input indices as processed)."""
    import torch

    inverse = np.empty(len(done), dtype=np.int64)
    inverse[np.asarray(done, dtype=np.int64)] = np.arange(len(done))
    outputs = {}
    for key, parts in collected.items():
        # One transfer at the end: the only host synchronisation of the whole evaluation.
        merged = torch.cat([p.float() if p.is_floating_point() else p for p in parts]).cpu().numpy()
        outputs[key] = merged[inverse]
    return outputs


# What a forward call costs beyond its tokens, counted in tokens, when batches are planned (CPU; min_cost_batches).
# Measured with benchmarks/probe_eval.py on 2 CPU cores (MiniLM-L6): one call of 1 x 8 tokens takes 7.4 ms, about
# 50 tokens' worth at the 135-165 us per token of large batches, and small batches run each token slower still;
# over 300 VADER test texts a sweep of 32 ... 256 was fastest at 48-64 (1.27 s, against 1.29-1.49 s elsewhere).
CALL_TOKENS = 64


def _plan(order: Sequence[int], lengths: Sequence[int], start: int, budget: int) -> dict[int, int]:
    """Rows of each planned batch of ``order[start:]``, keyed by its first position in ``order``."""
    plan, position = {}, start
    for batch in min_cost_batches(order[start:], lengths, budget, CALL_TOKENS):
        plan[position] = len(batch)
        position += len(batch)
    return plan


_P = ParamSpec("_P")


def _shardable(engine: Callable[_P, EngineResult]) -> Callable[_P, EngineResult]:
    """Inside :func:`cardgen.sharding.sharded_evaluation` (one process of several), :func:`run_engine` runs this
    process's share of the batches and gathers everyone's outputs (:func:`_run_sharded`); elsewhere, itself."""

    @functools.wraps(engine)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> EngineResult:
        shard = current_shard()
        if shard is None:
            return engine(*args, **kwargs)
        return cast(EngineResult, cast(Any, _run_sharded)(shard, *args, **kwargs))

    return run


@_shardable
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
    pack: bool = True,
    auto_batch: bool | None = None,
) -> EngineResult:
    """Run ``step`` over all examples in length-sorted batches and return per-example outputs in input order.

    Args:
        model: A torch module, already on its device and in eval mode.
        features: One dict per example of token-id lists (input_ids, attention_mask, token_type_ids, ...).
        step: ``step(model, batch) -> {name: tensor of shape [batch, ...]}``; same trailing shape every batch.
        batch_size: Examples in the first (longest) batch; later batches hold as many padded tokens.
        pad_token_id: The pad id for input_ids (attention_mask pads with 0, labels with -100).
        extra: Per-example values (e.g. labels) passed to ``step`` as tensors in the batch under their key.
        progress: Where to report examples done.
        description: The progress bar's label.
        pack: Pack later batches up to the first batch's padded tokens; False: ``batch_size`` examples each.
        auto_batch: Grow the token budget to the largest batch that fits in device memory; default: on CUDA.
    """
    import torch

    progress = progress or NullProgress()
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    grow = pack and cuda and auto_batch is not False
    lengths = [len(f["input_ids"]) for f in features]
    order = length_order(lengths)
    pad_values = {"input_ids": pad_token_id, "labels": -100}
    extra_arrays = {key: np.asarray(values) for key, values in (extra or {}).items()}
    collected: dict[str, list[Any]] = {}
    done: list[int] = []
    processed = largest = num_batches = 0
    rows = max(1, int(batch_size))
    budget: int | None = None  # padded tokens per batch, set by the first batch when packing
    # On a CPU the batches are planned up front (min_cost_batches): the least padding for what a call costs.
    planned = pack and device.type == "cpu" and bool(order)
    plan: dict[int, int] = {}  # position in ``order`` -> rows of the batch starting there
    if planned:
        budget = rows * max(1, lengths[order[0]])
        plan = _plan(order, lengths, 0, budget)
    start = time.perf_counter()
    progress.start_task(description, total=len(features))

    with torch.inference_mode(), sdpa_attention(model):
        i = 0
        while i < len(order):
            width = max(1, lengths[order[i]])
            fitting = rows if budget is None else max(1, min(MAX_ROWS, budget // width))
            take = plan[i] if planned else fitting
            idx = order[i : i + take]
            arrays = pad_batch([features[j] for j in idx], pad_values)
            batch = _on_device({**arrays, **{k: np.ascontiguousarray(v[idx]) for k, v in extra_arrays.items()}},
                               device)
            measure_peak = grow and num_batches == 0
            before = _reset_peak(device) if measure_peak else 0
            try:
                out = step(model, batch)
            except RuntimeError as exc:  # out-of-memory errors are RuntimeErrors
                if not is_out_of_memory(exc) or len(idx) == 1:
                    raise
                del batch
                # Halve this batch and retry; later batches keep the smaller size.
                rows, budget, grow = _halved(device, len(idx), width, budget)
                if planned and budget is not None:
                    plan = _plan(order, lengths, i, budget)
                continue
            if pack and num_batches == 0 and not planned:
                budget = arrays["input_ids"].size
                if measure_peak:
                    budget = max(budget, _cuda_token_budget(device, budget, _peak_since(device, before), len(idx)))
            for key, tensor in out.items():
                collected.setdefault(key, []).append(tensor.detach())
            processed += arrays["input_ids"].size
            largest = max(largest, len(idx))
            num_batches += 1
            done.extend(idx)
            i += len(idx)
            progress.advance(len(idx))
    progress.end_task()
    return EngineResult(outputs=_in_input_order(collected, done), real_tokens=int(sum(lengths)), processed_tokens=int(processed),
                        seconds=time.perf_counter() - start, num_batches=num_batches, max_batch_size=largest)


def _run_sharded(shard: Any, model: Any, features: Sequence[Features], step: StepFn, *, batch_size: int = 32,
                 pad_token_id: int = 0, extra: dict[str, Sequence[Any]] | None = None,
                 progress: Progress | None = None, description: str = "Evaluating", pack: bool = True,
                 auto_batch: bool | None = None) -> EngineResult:
    """:func:`run_engine` in one process of several (see :mod:`cardgen.sharding`): the one-process plan's batches
    dealt out, outputs gathered. The plan is fixed (no growing on CUDA, no halving): a batch that runs out of memory
    fails, and a smaller ``evaluation.batch_size`` is the fix."""
    import torch

    from cardgen.sharding import has_sharded_parameters, run_shard

    progress = progress or NullProgress()
    device = next(model.parameters()).device
    lengths = [len(f["input_ids"]) for f in features]
    batches = planned_batches(lengths, batch_size, pack)
    pad_values = {"input_ids": pad_token_id, "labels": -100}
    extra_arrays = {key: np.asarray(values) for key, values in (extra or {}).items()}

    def run_batch(idx: Sequence[int]) -> dict[str, Any]:
        arrays = pad_batch([features[j] for j in idx], pad_values)
        rows = list(idx)
        batch = _on_device({**arrays, **{k: np.ascontiguousarray(v[rows]) for k, v in extra_arrays.items()}}, device)
        return {key: tensor.detach() for key, tensor in step(model, batch).items()}

    start = time.perf_counter()
    progress.start_task(description, total=len(features))
    done = [0]

    def advance(rows: int) -> None:
        done[0] += rows
        progress.advance(rows)

    with torch.inference_mode(), sdpa_attention(model):
        outputs = run_shard(shard, batches, lengths, run_batch, lockstep=has_sharded_parameters(model),
                            advance=advance)
    progress.advance(len(features) - done[0])  # the other processes' examples, gathered
    progress.end_task()
    processed = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return EngineResult(outputs=outputs, real_tokens=int(sum(lengths)), processed_tokens=int(processed),
                        seconds=time.perf_counter() - start, num_batches=len(batches),
                        max_batch_size=max((len(b) for b in batches), default=0))
