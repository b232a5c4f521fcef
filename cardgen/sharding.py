"""Evaluation on every process of a torchrun / ``accelerate launch`` run: batches dealt out, outputs gathered back.

The evaluation engine cuts the examples into the same length-sorted batches whatever the number of processes
(:func:`cardgen.engine.planned_batches`). Inside :func:`sharded_evaluation`, each process runs its share of those
batches and the per-example outputs are gathered on every process, in input order. Each example is computed in
exactly the batch (same companions, same padded width) it has in a one-process run, so the outputs, and every
metric, interval and test computed from them, equal the one-process run's bit for bit.

With parameters sharded across the processes (FSDP, DeepSpeed ZeRO-3), every forward pass is a collective: each
process runs the same number of batches (a process with fewer runs the plan's shortest batch again and drops its
outputs), so none waits forever for another.

Random state never depends on the number of processes: masks and probe seeds are drawn before the engine runs, the
same on every process, and the probe is fitted on the gathered features.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cardgen.distributed import world_size

RunBatch = Callable[[Sequence[int]], Mapping[str, Any]]


@dataclass(frozen=True)
class Shard:
    """This process's place in the evaluation: its rank, the number of processes, the group that gathers."""

    rank: int
    size: int
    group: Any  # a gloo process group (CPU tensors and pickled objects), or None for the default group


_SHARD: contextvars.ContextVar[Shard | None] = contextvars.ContextVar("cardgen_shard", default=None)
_GLOO: dict[str, Any] = {}  # the gloo group made once per launch when the default group is not gloo


def current_shard() -> Shard | None:
    """The shard the engine runs in (None: one process evaluates everything, the plain engine)."""
    return _SHARD.get()


@contextlib.contextmanager
def sharded_evaluation() -> Iterator[Shard | None]:
    """Within it, :func:`cardgen.engine.run_engine` runs this process's share and gathers every process's outputs.

    A no-op in a one-process run. In a launch of several processes every process must enter it, in the same
    order, and run the same evaluations: the gathers are collectives. The process group the Trainer set up is
    used; without training (``--no-train``, or the base evaluated before training) it is set up here from the
    launcher's environment (gloo on CPU; NCCL for CUDA tensors and gloo for CPU ones on GPUs).
    """
    if world_size() <= 1:
        yield None
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        _init_default_group()
    shard = Shard(rank=dist.get_rank(), size=dist.get_world_size(), group=_gloo_group())
    token = _SHARD.set(shard)
    try:
        yield shard
    finally:
        _SHARD.reset(token)


def _init_default_group() -> None:
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0") or 0))
        backend = "cuda:nccl,cpu:gloo"
    else:
        backend = "gloo"
    # The Trainer, if it runs later, finds this group and uses it (accelerate sets up a group only when none exists).
    dist.init_process_group(backend=backend, timeout=dt.timedelta(minutes=30))


def _gloo_group() -> Any:
    """A group that gathers CPU objects: the default one when it is gloo, else one gloo group made once."""
    import torch.distributed as dist

    if dist.get_backend() == "gloo":
        return None
    if "group" not in _GLOO:
        _GLOO["group"] = dist.new_group(backend="gloo")  # a collective: every process makes it at the same point
    return _GLOO["group"]


def has_sharded_parameters(model: Any) -> bool:
    """Whether ``model``'s weights are split across processes (FSDP 1 or 2, DeepSpeed ZeRO-3): then a forward pass
    needs every process, and no process can run the model alone."""
    if any(type(m).__name__ == "FullyShardedDataParallel" for m in model.modules()):
        return True
    return any(hasattr(p, "ds_id") or type(p).__name__ == "DTensor" for p in model.parameters())


def deal(costs: Sequence[int], size: int) -> list[list[int]]:
    """Batch indices per process: each batch, costliest first, goes to the process with the least work so far
    (ties to the lowest rank). Deterministic: every process computes the same deal."""
    loads = [0] * size
    shares: list[list[int]] = [[] for _ in range(size)]
    for b in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(size), key=lambda r: (loads[r], r))
        shares[rank].append(b)
        loads[rank] += costs[b]
    return [sorted(s) for s in shares]


def batch_cost(lengths: Sequence[int], batch: Sequence[int]) -> int:
    """Padded tokens of a batch (rows x its longest example)."""
    return len(batch) * max((lengths[i] for i in batch), default=0)


def run_shard(shard: Shard, batches: Sequence[Sequence[int]], lengths: Sequence[int], run_batch: RunBatch, *,
              lockstep: bool, advance: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Run this process's share of ``batches`` and gather every process's outputs, in input order.

    Args:
        shard: Where this process stands (from :func:`current_shard`).
        batches: The whole plan, the same on every process; every example index appears once.
        lengths: Tokens per example (the deal balances padded tokens).
        run_batch: Runs one batch, returns ``{name: tensor or array of shape [rows, ...]}``.
        lockstep: Run the same number of batches on every process (sharded parameters), padding with the plan's
            last batch, whose outputs are dropped.
        advance: Called with the rows of each real batch done (progress).

    Returns:
        ``{name: array over all examples}`` in input order; floating outputs as float32, as the engine returns them.
    """
    shares = deal([batch_cost(lengths, b) for b in batches], shard.size)
    mine = [batches[b] for b in shares[shard.rank]]
    runs = max(len(s) for s in shares) if lockstep else len(mine)
    done: list[int] = []
    parts: dict[str, list[np.ndarray]] = {}
    for k in range(runs):
        if k >= len(mine):
            run_batch(batches[-1])  # a collective forward pass the others make: take part, keep nothing
            continue
        out = run_batch(mine[k])
        for key, value in out.items():
            parts.setdefault(key, []).append(_host(value))
        done.extend(mine[k])
        if advance is not None:
            advance(len(mine[k]))
    local = {key: np.concatenate(values) for key, values in parts.items()}
    return gather(shard, done, local, sum(len(b) for b in batches))


def _host(value: Any) -> np.ndarray:
    """A batch output as a host array; floating values as float32 (the engine's ``_in_input_order`` does the same)."""
    if isinstance(value, np.ndarray):
        return value
    if value.is_floating_point():
        value = value.float()
    return value.detach().cpu().numpy()


def gather(shard: Shard, indices: Sequence[int], outputs: Mapping[str, np.ndarray], total: int) -> dict[str, np.ndarray]:
    """Every process's ``(indices, outputs)`` gathered on every process and put back in input order.

    Args:
        shard: Where this process stands.
        indices: The input indices of this process's rows, in the order of ``outputs``.
        outputs: ``{name: array with one row per index}``.
        total: The number of examples over all processes (each index 0..total-1 exactly once).
    """
    import torch.distributed as dist

    pieces: list[Any] = [None] * shard.size
    dist.all_gather_object(pieces, (list(indices), dict(outputs)), group=shard.group)
    order = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in pieces]) if total else np.zeros(0, np.int64)
    if len(order) != total or (total and not np.array_equal(np.sort(order), np.arange(total))):
        raise RuntimeError(f"the processes returned {len(order)} outputs for {total} examples")
    inverse = np.empty(total, dtype=np.int64)
    inverse[order] = np.arange(total)
    keys = next((list(p[1]) for p in pieces if p[1]), [])
    merged = {}
    for key in keys:
        merged[key] = np.concatenate([p[1][key] for p in pieces if p[1]])[inverse]
    return merged
