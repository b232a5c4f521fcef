"""Timers, exact latency statistics, the measuring loop, memory peaks and interleaved rounds.

How the numbers are made (after optimum-benchmark's latency and memory trackers, reimplemented here):

- Timing: on CPU ``time.perf_counter`` around each call; on CUDA a pair of ``torch.cuda.Event(enable_timing=True)``
  recorded on the device's current stream around each call, and the device synchronised before the pair is read,
  so a number is the time the GPU took, not the time Python took to queue kernels. Reading after every call (one
  host synchronisation per iteration) keeps iterations from overlapping and makes the seconds budget count work
  that has finished.
- Each model and batch size gets one cold call (the first ever: allocation, kernel selection, ``torch.compile``),
  timed and reported apart, then ``warmup`` un-timed calls, then timed calls until at least ``min_iterations`` were
  made AND at least ``min_seconds`` were spent in timed calls.
- Models are measured in the same process in interleaved rounds (round-robin over models for each batch size,
  several rounds, each starting with one un-timed call that re-warms caches after the switch), so drift of the
  machine (thermal throttling, other processes) hits every model alike.
- Statistics are exact functions of the recorded seconds: mean, sample standard deviation (``ddof=1``), and
  percentiles by ``numpy.percentile`` with linear interpolation (``method="linear"``, numpy's default: the value at
  rank ``(n - 1) * q / 100`` interpolated between its two neighbours).
- Memory: host memory is the process resident set size (RSS). A background thread samples ``psutil`` RSS every
  few milliseconds, and ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the lifetime peak the kernel keeps) is read
  before and after: when it rose during the window, it is the exact peak of the window. The delta is that peak
  minus the RSS when the window opened. On CUDA ``torch.cuda.max_memory_allocated`` and ``max_memory_reserved``
  are read after ``reset_peak_memory_stats``. Memory is tracked over the cold call and the warm-up (same inputs and
  shapes as the timed calls), not over the timed calls, where the sampling thread would perturb the timings.
  Peaks are process-wide: they include every model loaded in the process.

The module imports neither torch nor transformers at import time.
"""

from __future__ import annotations

import gc
import math
import platform
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

import numpy as np

from cardgen.errors import ConfigError
from cardgen.record import LatencyStats, MemoryStats

T = TypeVar("T")
RSS_SAMPLE_INTERVAL_S = 0.005


# --------------------------------------------------------------------------------------------------- statistics
def latency_stats(
    seconds: Sequence[float], batch_size: int, *, tokens_per_batch: int | None = None
) -> LatencyStats:
    """Exact statistics of timed calls.

    Percentiles use ``numpy.percentile(method="linear")``: the value at rank ``(n - 1) * q / 100`` of the sorted
    values, linearly interpolated between the two nearest ranks. The standard deviation is the sample one
    (``ddof=1``), 0.0 for a single value.

    Args:
        seconds: Duration of each timed call (one batch each), in seconds.
        batch_size: Samples per call.
        tokens_per_batch: Non-padding tokens per call, for tokens/s; None leaves tokens/s out.

    Raises:
        ValueError: No timings, a negative timing, or a batch size below 1.
    """
    if len(seconds) == 0:
        raise ValueError("latency_stats needs at least one timing")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    values = np.asarray(seconds, dtype=np.float64)
    if (values < 0).any() or not np.isfinite(values).all():
        raise ValueError("timings must be finite and >= 0")
    mean = float(values.mean())
    p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99], method="linear"))
    return LatencyStats(
        batch_size=batch_size,
        count=len(values),
        mean_s=mean,
        std_s=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        min_s=float(values.min()),
        p50_s=p50,
        p90_s=p90,
        p99_s=p99,
        max_s=float(values.max()),
        total_s=float(values.sum()),
        per_sample_mean_s=mean / batch_size,
        samples_per_s=batch_size / mean if mean > 0 else None,
        tokens_per_batch=tokens_per_batch,
        tokens_per_s=tokens_per_batch / mean if tokens_per_batch is not None and mean > 0 else None,
        seconds=[float(v) for v in values],
    )


# --------------------------------------------------------------------------------------------------- timers
class Timer(Protocol):
    """Times one call: ``start()``, the call, ``stop()``, then ``elapsed()`` in seconds."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def elapsed(self) -> float: ...


class CpuTimer:
    """Wall-clock time with ``time.perf_counter``."""

    name = "perf_counter"

    def __init__(self) -> None:
        self._start = 0.0
        self._end = 0.0

    def start(self) -> None:
        """Mark the start."""
        self._start = time.perf_counter()

    def stop(self) -> None:
        """Mark the end."""
        self._end = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds between start and stop."""
        return self._end - self._start


class CudaTimer:
    """GPU time with CUDA events recorded on the device's current stream.

    Nothing touches CUDA until :meth:`start`, so the timer can be built (and chosen) on a machine without a GPU.

    Args:
        device: A CUDA device ("cuda", "cuda:1" or a ``torch.device``).
    """

    name = "cuda-events"

    def __init__(self, device: Any = "cuda") -> None:
        self.device = device
        self._start: Any = None
        self._end: Any = None

    def start(self) -> None:
        """Record the start event (kernels queued before it are not counted)."""
        import torch

        stream = torch.cuda.current_stream(self.device)
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self._start.record(stream)

    def stop(self) -> None:
        """Record the end event after the kernels the call queued."""
        import torch

        self._end.record(torch.cuda.current_stream(self.device))

    def elapsed(self) -> float:
        """Synchronise the device, then read the seconds between the two events."""
        import torch

        # Events are read only once the device has finished everything queued, other streams included.
        torch.cuda.synchronize(self.device)
        return float(self._start.elapsed_time(self._end)) / 1000.0


def is_cuda(device: Any) -> bool:
    """Whether ``device`` ("cpu", "cuda:0", a ``torch.device`` ...) is a CUDA device."""
    kind = getattr(device, "type", None) or str(device).split(":", 1)[0]
    return kind == "cuda"


def make_timer(device: Any) -> Timer:
    """The timer for ``device``: :class:`CudaTimer` on CUDA, :class:`CpuTimer` otherwise."""
    return CudaTimer(device) if is_cuda(device) else CpuTimer()


def synchronize(device: Any) -> None:
    """Wait for the device to finish queued work (no-op off CUDA)."""
    if is_cuda(device):
        import torch

        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------------- measuring
def check_budget(warmup: int, min_iterations: int, min_seconds: float) -> None:
    if warmup < 0:
        raise ConfigError(f"`benchmark.warmup` must be >= 0 (got {warmup})")
    if min_iterations < 1:
        raise ConfigError(f"`benchmark.min_iterations` must be >= 1 (got {min_iterations})")
    if not min_seconds >= 0 or math.isinf(min_seconds):
        raise ConfigError(f"`benchmark.min_seconds` must be a finite number >= 0 (got {min_seconds})")


def time_call(fn: Callable[[], Any], *, device: Any = "cpu", timer: Timer | None = None) -> float:
    """Time one call of ``fn`` (used for the cold call), after letting queued device work finish.

    Args:
        fn: The call.
        device: Where ``fn`` runs; picks the timer.
        timer: Overrides the timer (tests).

    Returns:
        Seconds.
    """
    timer = timer or make_timer(device)
    synchronize(device)
    timer.start()
    fn()
    timer.stop()
    return timer.elapsed()


def measure(
    fn: Callable[[], Any],
    *,
    warmup: int = 2,
    min_iterations: int = 10,
    min_seconds: float = 1.0,
    device: Any = "cpu",
    timer: Timer | None = None,
    max_iterations: int | None = None,
) -> list[float]:
    """Warm up, then time calls of ``fn`` until at least ``min_iterations`` AND at least ``min_seconds``.

    The seconds budget counts timed seconds (the sum of the recorded durations), so it is met by work, not by
    loop overhead. The cold call is not part of this: time it with :func:`time_call` before, and report it apart.

    Args:
        fn: The call to time.
        warmup: Un-timed calls first.
        min_iterations: Fewest timed calls.
        min_seconds: Fewest timed seconds in all.
        device: Where ``fn`` runs; picks the timer (CUDA events on CUDA, perf_counter elsewhere).
        timer: Overrides the timer (tests).
        max_iterations: A safety cap on timed calls (None: no cap).

    Returns:
        Seconds of each timed call, in order.

    Raises:
        ConfigError: A negative warm-up, fewer than one iteration or a negative or infinite seconds budget.
    """
    check_budget(warmup, min_iterations, min_seconds)
    timer = timer or make_timer(device)
    for _ in range(warmup):
        fn()
    synchronize(device)  # warm-up work must not spill into the first timed call
    seconds: list[float] = []
    total = 0.0
    while len(seconds) < min_iterations or total < min_seconds:
        if max_iterations is not None and len(seconds) >= max_iterations:
            break
        timer.start()
        fn()
        timer.stop()
        elapsed = timer.elapsed()
        seconds.append(elapsed)
        total += elapsed
    return seconds


def timed(fn: Callable[[], T], *, device: Any = "cpu") -> tuple[T, float]:
    """Call ``fn`` once (e.g. loading a model) and return its result and wall-clock seconds, device synchronised."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


# --------------------------------------------------------------------------------------------------- memory
def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _ru_maxrss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(peak) if platform.system() == "Darwin" else int(peak) * 1024


def memory_method(device: Any) -> str:
    """How :class:`MemoryTracker` measures on ``device``, in words for the record."""
    text = (
        f"process RSS: psutil sampled every {RSS_SAMPLE_INTERVAL_S * 1000:g} ms, "
        "corrected by getrusage ru_maxrss; delta = peak - RSS at window start"
    )
    if is_cuda(device):
        text += "; CUDA: torch.cuda.max_memory_allocated/max_memory_reserved after reset_peak_memory_stats"
    return text


class MemoryTracker:
    """Peak memory while a block runs: ``with MemoryTracker(device) as t: ...`` then ``t.result()``.

    Args:
        device: The device the block runs on (CUDA adds allocator peaks).
        interval: Seconds between RSS samples.
        collect: Run the garbage collector first, so garbage of earlier work does not count in the baseline
            (a full collection takes a few hundred ms with transformers loaded).
    """

    def __init__(
        self, device: Any = "cpu", interval: float = RSS_SAMPLE_INTERVAL_S, collect: bool = True
    ) -> None:
        self.device = device
        self.interval = interval
        self.collect = collect
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._baseline = 0
        self._sampled_peak = 0
        self._ru_before: int | None = None
        self._result: MemoryStats | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._sampled_peak = max(self._sampled_peak, _rss_bytes())

    def __enter__(self) -> MemoryTracker:
        if self.collect:
            gc.collect()
        if is_cuda(self.device):
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._baseline = _rss_bytes()
        self._sampled_peak = self._baseline
        self._ru_before = _ru_maxrss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="cardgen-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        peak = max(self._sampled_peak, _rss_bytes())
        ru_after = _ru_maxrss_bytes()
        if ru_after is not None and self._ru_before is not None and ru_after > self._ru_before:
            # The lifetime peak rose inside the window, so it is the window's peak, spikes between samples included.
            peak = max(peak, ru_after)
        allocated = reserved = None
        if is_cuda(self.device):
            import torch

            allocated = int(torch.cuda.max_memory_allocated(self.device))
            reserved = int(torch.cuda.max_memory_reserved(self.device))
        self._result = MemoryStats(
            device=str(self.device),
            method=memory_method(self.device),
            rss_baseline_bytes=self._baseline,
            rss_peak_bytes=peak,
            rss_delta_bytes=max(0, peak - self._baseline),
            cuda_max_allocated_bytes=allocated,
            cuda_max_reserved_bytes=reserved,
        )

    def result(self) -> MemoryStats:
        """The peaks of the finished window."""
        if self._result is None:
            raise RuntimeError("MemoryTracker.result() called before the block ended")
        return self._result



# --------------------------------------------------------------------------------------------------- scheduling
@dataclass
class Slot:
    """One thing measured: a call with its inputs ready on the device."""

    call: Callable[[], Any]
    device: Any
    cold_s: float = 0.0
    memory: MemoryStats | None = None
    seconds: list[float] = field(default_factory=list)


def _call_into(fn: Callable[[], Any], out: list[Any]) -> None:
    out.append(fn())


def run_interleaved(
    slots: Mapping[Hashable, Slot],
    *,
    warmup: int,
    min_iterations: int,
    min_seconds: float,
    rounds: int,
    check: Callable[[Hashable, Any], None] | None = None,
) -> None:
    """Cold call and warm-up (memory tracked) for every slot in order, then ``rounds`` round-robin rounds.

    Each round gives every slot one re-warming call and then its share of the budget (iterations and seconds
    divided by ``rounds``, rounded up), so the totals meet the budget and drift is spread over all slots.
    ``check(key, output)`` sees the output of each cold call.
    """
    gc.collect()  # once: the windows below start from the same collected heap
    for key, slot in slots.items():
        output: list[Any] = []
        with MemoryTracker(slot.device, collect=False) as tracker:
            slot.cold_s = time_call(partial(_call_into, slot.call, output), device=slot.device)
            for _ in range(warmup):
                slot.call()
        slot.memory = tracker.result()
        if check is not None:
            check(key, output[0])
        output.clear()
    per_round_iterations = math.ceil(min_iterations / rounds)
    per_round_seconds = min_seconds / rounds
    for _ in range(rounds):
        for slot in slots.values():
            slot.seconds.extend(
                measure(
                    slot.call,
                    warmup=min(warmup, 1),
                    min_iterations=per_round_iterations,
                    min_seconds=per_round_seconds,
                    device=slot.device,
                )
            )
