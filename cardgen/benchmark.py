"""Latency, throughput and memory of a model, measured honestly.

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
import os
import platform
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from cardgen.errors import ConfigError, ModelError

T = TypeVar("T")
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
RSS_SAMPLE_INTERVAL_S = 0.005


# --------------------------------------------------------------------------------------------------- records
@dataclass
class LatencyStats:
    """Statistics of the timed calls of one model at one batch size (seconds per call = per batch)."""

    batch_size: int
    count: int
    mean_s: float
    std_s: float  # sample standard deviation (ddof=1); 0.0 for a single call
    min_s: float
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float
    total_s: float
    per_sample_mean_s: float  # mean_s / batch_size
    samples_per_s: float | None  # batch_size / mean_s (None when mean_s is 0)
    tokens_per_batch: int | None = None
    tokens_per_s: float | None = None  # tokens_per_batch / mean_s
    seconds: list[float] = field(default_factory=list)  # every timed call, in order


@dataclass
class MemoryStats:
    """Peak memory over one window (or the largest over several). Bytes."""

    device: str
    method: str
    rss_baseline_bytes: int  # RSS when the window opened
    rss_peak_bytes: int
    rss_delta_bytes: int  # peak - baseline: what the calls added on top of what was resident
    cuda_max_allocated_bytes: int | None = None
    cuda_max_reserved_bytes: int | None = None


@dataclass
class BatchResult:
    """One model at one batch size."""

    batch_size: int
    sequence_length: int  # padded length of the batch
    tokens_per_batch: int  # tokens that are not padding
    cold_s: float  # the first call, with everything a first call pays for
    latency: LatencyStats
    memory: MemoryStats


@dataclass
class GenerationResult:
    """Greedy generation of a fixed number of new tokens by one causal LM."""

    batch_size: int
    prompt_length: int
    new_tokens: int
    cold_s: float  # the first full generate call
    time_to_first_token: (
        LatencyStats  # generate() with max_new_tokens = min_new_tokens = 1: prefill + 1 token
    )
    generate: LatencyStats  # generate() with max_new_tokens = min_new_tokens = new_tokens
    decode_tokens_per_s: float | None  # batch * (new_tokens - 1) / (generate.mean_s - ttft.mean_s)
    memory: MemoryStats


@dataclass
class ModelBenchmark:
    """Everything measured for one model."""

    name: str
    device: str
    num_parameters: int
    size_on_disk_bytes: int | None = None
    load_s: float | None = None
    batches: list[BatchResult] = field(default_factory=list)
    generation: list[GenerationResult] = field(default_factory=list)


@dataclass
class BenchmarkSettings:
    """How the numbers were made: recorded next to them."""

    device: str
    device_name: str
    precision: str  # fp32 | bf16 | fp16
    autocast_dtype: str | None  # "bfloat16" / "float16" when autocast ran, None for fp32
    compile: bool
    torch_threads: int
    torch_version: str
    transformers_version: str
    batch_sizes: list[int]
    sequence_length: int
    inputs: str  # "synthetic" (random ids, full attention mask) or "texts"
    warmup: int
    min_iterations: int
    min_seconds: float
    rounds: int
    seed: int
    timer: str  # "perf_counter" or "cuda-events"
    memory_method: str
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchmarkRecord:
    """The benchmark stage's output: settings and one entry per model (base and fine-tuned)."""

    settings: BenchmarkSettings
    models: dict[str, ModelBenchmark]


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
def _check_budget(warmup: int, min_iterations: int, min_seconds: float) -> None:
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
    _check_budget(warmup, min_iterations, min_seconds)
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


# --------------------------------------------------------------------------------------------------- model facts
def num_parameters(model: Any) -> int:
    """Parameters of a torch module, tied weights counted once."""
    return int(sum(p.numel() for p in model.parameters()))


def size_on_disk(path: str | os.PathLike[str]) -> int:
    """Bytes of a checkpoint: a file's size, or the sum of the files directly inside a directory.

    Sub-directories (a Trainer's ``checkpoint-*`` folders, ``runs/``) are not counted; symbolic links (the Hub cache)
    are followed.

    Raises:
        ModelError: The path does not exist.
    """
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if not p.is_dir():
        raise ModelError(
            f"checkpoint `{p}` does not exist", hint="pass the directory the model was loaded from"
        )
    return sum(f.stat().st_size for f in p.iterdir() if f.is_file())


def _checkpoint_dir(model: Any) -> Path | None:
    name = getattr(model, "name_or_path", None) or getattr(
        getattr(model, "config", None), "_name_or_path", None
    )
    if name and Path(name).exists():
        return Path(name)
    return None


def _model_device(name: str, model: Any) -> Any:
    try:
        return next(model.parameters()).device
    except StopIteration:
        raise ModelError(
            f"model `{name}` has no parameters", hint="pass a loaded transformers model"
        ) from None


# --------------------------------------------------------------------------------------------------- precision
def _cpu_has_native_bf16() -> bool:
    import torch

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None and fn():
            return True
    if platform.machine().lower() in ("arm64", "aarch64"):
        try:
            return " bf16" in Path("/proc/cpuinfo").read_text()
        except OSError:
            return platform.system() == "Darwin"
    return False


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


def _autocast(device: Any, dtype: Any) -> AbstractContextManager[Any]:
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


def _input_names(tokenizer: Any) -> list[str]:
    names = list(getattr(tokenizer, "model_input_names", None) or ["input_ids", "attention_mask"])
    return [n for n in names if n in ("input_ids", "attention_mask", "token_type_ids")]


def _pad_id(tokenizer: Any, model: Any) -> int:
    for source in (tokenizer, getattr(model, "generation_config", None), getattr(model, "config", None)):
        for attr in ("pad_token_id", "eos_token_id"):
            value = getattr(source, attr, None) if source is not None else None
            if isinstance(value, list):
                value = value[0] if value else None
            if isinstance(value, int):
                return value
    return 0


def _synthetic_batch(ids: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    batch = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if "token_type_ids" in names:
        batch["token_type_ids"] = np.zeros_like(ids)
    return batch


def _text_batch(
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
    names = _input_names(tokenizer)
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


def _to_device(batch: Mapping[str, np.ndarray], device: Any) -> dict[str, Any]:
    import torch

    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


def _vocab_size(models: Mapping[str, tuple[Any, Any]]) -> int:
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


# --------------------------------------------------------------------------------------------------- scheduling
@dataclass
class _Slot:
    """One thing measured: a call with its inputs ready on the device."""

    call: Callable[[], Any]
    device: Any
    cold_s: float = 0.0
    memory: MemoryStats | None = None
    seconds: list[float] = field(default_factory=list)


def _call_into(fn: Callable[[], Any], out: list[Any]) -> None:
    out.append(fn())


def _run_interleaved(
    slots: Mapping[Hashable, _Slot],
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


@contextmanager
def _eval_mode(models: Sequence[Any]) -> Iterator[None]:
    was_training = [bool(getattr(m, "training", False)) for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(models, was_training, strict=True):
            m.train(mode)


def _check_common(
    models: Mapping[str, tuple[Any, Any]],
    batch_sizes: Sequence[int],
    length: int,
    rounds: int,
    inputs: Any,
    length_name: str,
) -> Any:
    """Validate the arguments shared by both benchmarks; return the one device all models are on."""
    if not models:
        raise ConfigError("nothing to benchmark: no models given")
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ConfigError(f"`benchmark.batch_sizes` must be integers >= 1 (got {list(batch_sizes)})")
    if length < 1:
        raise ConfigError(f"`benchmark.{length_name}` must be >= 1 (got {length})")
    if rounds < 1:
        raise ConfigError(f"`benchmark.rounds` must be >= 1 (got {rounds})")
    if not (
        inputs == "synthetic"
        or (isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs))
    ):
        raise ConfigError("`benchmark.inputs` must be 'synthetic' or a non-empty list of texts")
    devices = {name: _model_device(name, model) for name, (model, _) in models.items()}
    if len({str(d) for d in devices.values()}) > 1:
        raise ModelError(
            f"the models are on different devices ({', '.join(f'{n}: {d}' for n, d in devices.items())})",
            hint="put them on the same device so their numbers compare",
        )
    return next(iter(devices.values()))


def _settings(
    *,
    device: Any,
    precision: str,
    dtype: Any,
    compile: bool,
    batch_sizes: Sequence[int],
    length: int,
    inputs: Any,
    warmup: int,
    min_iterations: int,
    min_seconds: float,
    rounds: int,
    seed: int,
) -> BenchmarkSettings:
    import torch

    if is_cuda(device):
        device_name = torch.cuda.get_device_name(device)
    else:
        from cardgen.environment import cpu_name

        device_name = cpu_name()
    try:
        transformers_version = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        transformers_version = ""
    return BenchmarkSettings(
        device=str(device),
        device_name=device_name,
        precision=precision,
        autocast_dtype=str(dtype).removeprefix("torch.") if dtype is not None else None,
        compile=compile,
        torch_threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        transformers_version=transformers_version,
        batch_sizes=[int(b) for b in batch_sizes],
        sequence_length=int(length),
        inputs="synthetic" if inputs == "synthetic" else "texts",
        warmup=warmup,
        min_iterations=min_iterations,
        min_seconds=float(min_seconds),
        rounds=rounds,
        seed=seed,
        timer=make_timer(device).name,
        memory_method=memory_method(device),
        notes=[
            "inputs are on the device before timing: host-to-device copies are not timed",
            "the first model's cold call also pays one-off costs of the process (lazy imports, thread pools)",
            "memory peaks are process-wide: they include every model loaded in the process",
        ],
    )


def _model_entry(
    name: str,
    model: Any,
    device: Any,
    load_s: Mapping[str, float] | None,
    checkpoints: Mapping[str, str | os.PathLike[str]] | None,
) -> ModelBenchmark:
    path = (checkpoints or {}).get(name) or _checkpoint_dir(model)
    return ModelBenchmark(
        name=name,
        device=str(device),
        num_parameters=num_parameters(model),
        size_on_disk_bytes=size_on_disk(path) if path is not None else None,
        load_s=float(load_s[name]) if load_s and name in load_s else None,
    )


# --------------------------------------------------------------------------------------------------- benchmarks
def benchmark_models(
    models: Mapping[str, tuple[Any, Any]],
    *,
    batch_sizes: Sequence[int] = (1, 32),
    sequence_length: int = 128,
    warmup: int = 2,
    min_iterations: int = 10,
    min_seconds: float = 1.0,
    precision: Precision = "fp32",
    compile: bool = False,
    inputs: Literal["synthetic"] | Sequence[str] = "synthetic",
    rounds: int = 3,
    seed: int = 0,
    load_s: Mapping[str, float] | None = None,
    checkpoints: Mapping[str, str | os.PathLike[str]] | None = None,
) -> BenchmarkRecord:
    """Forward-pass latency, throughput and memory of several models (base and fine-tuned) on the same inputs.

    All models are measured in this process, in interleaved rounds per batch size. Inputs are moved to the device
    before timing (host-to-device copies are not timed). Calls run under ``torch.inference_mode`` and, for bf16/fp16,
    ``torch.autocast``.

    Args:
        models: Name -> (model, tokenizer), every model already on the same device. The tokenizer may be None for
            synthetic inputs.
        batch_sizes: Batch sizes to measure.
        sequence_length: Tokens per row for synthetic inputs; the truncation length for texts.
        warmup: Un-timed calls after the cold call.
        min_iterations: Fewest timed calls per model and batch size (over all rounds).
        min_seconds: Fewest timed seconds per model and batch size (over all rounds).
        precision: "fp32", "bf16" (CUDA, or a CPU with native bf16) or "fp16" (CUDA): autocast dtype.
        compile: Wrap each model in ``torch.compile`` (the cold call then includes compilation).
        inputs: "synthetic" (seeded random ids in the smallest vocabulary of the models, full attention mask,
            identical for every model) or real texts (the first ``batch_size`` texts, cycled, each model's own
            tokenizer, padded to the batch's longest).
        rounds: Interleaved rounds.
        seed: Seed of the synthetic ids.
        load_s: Name -> seconds the model took to load (see :func:`timed`), recorded as given.
        checkpoints: Name -> checkpoint path for the size on disk; defaults to the directory the model was loaded
            from, when it exists locally.

    Returns:
        The settings and, per model, per batch size: latency statistics, cold call, memory; parameters and size.

    Raises:
        ConfigError: A bad budget, batch size, precision or inputs.
        ModelError: Models on different devices, or a model without parameters.
    """
    import torch

    _check_budget(warmup, min_iterations, min_seconds)
    device = _check_common(models, batch_sizes, sequence_length, rounds, inputs, "sequence_length")
    dtype = autocast_dtype(precision, device)
    settings = _settings(
        device=device,
        precision=precision,
        dtype=dtype,
        compile=compile,
        batch_sizes=batch_sizes,
        length=sequence_length,
        inputs=inputs,
        warmup=warmup,
        min_iterations=min_iterations,
        min_seconds=min_seconds,
        rounds=rounds,
        seed=seed,
    )
    record = BenchmarkRecord(
        settings=settings,
        models={name: _model_entry(name, m, device, load_s, checkpoints) for name, (m, _) in models.items()},
    )
    runners = {name: (torch.compile(m) if compile else m) for name, (m, _) in models.items()}
    synthetic = inputs == "synthetic"
    ids = (
        synthetic_ids(max(batch_sizes), sequence_length, _vocab_size(models), seed=seed)
        if synthetic
        else None
    )

    with _eval_mode([m for m, _ in models.values()]), torch.inference_mode(), _autocast(device, dtype):
        for batch_size in batch_sizes:
            slots: dict[Hashable, _Slot] = {}
            shapes: dict[str, tuple[int, int]] = {}
            for name, (model, tokenizer) in models.items():
                if ids is not None:
                    arrays = _synthetic_batch(ids[:batch_size], _input_names(tokenizer))
                else:
                    arrays = _text_batch(
                        inputs, batch_size, sequence_length, tokenizer, _pad_id(tokenizer, model)
                    )
                batch = _to_device(arrays, device)
                shapes[name] = (arrays["input_ids"].shape[1], int(arrays["attention_mask"].sum()))
                runner = runners[name]
                slots[name] = _Slot(call=partial(runner, **batch), device=device)
            _run_interleaved(
                slots, warmup=warmup, min_iterations=min_iterations, min_seconds=min_seconds, rounds=rounds
            )
            for name in models:
                slot, (width, tokens) = slots[name], shapes[name]
                assert slot.memory is not None
                record.models[name].batches.append(
                    BatchResult(
                        batch_size=batch_size,
                        sequence_length=width,
                        tokens_per_batch=tokens,
                        cold_s=slot.cold_s,
                        latency=latency_stats(slot.seconds, batch_size, tokens_per_batch=tokens),
                        memory=slot.memory,
                    )
                )
    return record


def benchmark_generation(
    models: Mapping[str, tuple[Any, Any]],
    *,
    batch_size: int = 1,
    prompt_length: int = 32,
    new_tokens: int = 32,
    warmup: int = 1,
    min_iterations: int = 5,
    min_seconds: float = 1.0,
    precision: Precision = "fp32",
    inputs: Literal["synthetic"] | Sequence[str] = "synthetic",
    rounds: int = 3,
    seed: int = 0,
    record: BenchmarkRecord | None = None,
    load_s: Mapping[str, float] | None = None,
    checkpoints: Mapping[str, str | os.PathLike[str]] | None = None,
) -> BenchmarkRecord:
    """Time to first token and decode speed of causal LMs, greedy, with a fixed number of new tokens.

    Two calls are timed per model, interleaved like :func:`benchmark_models`: ``generate`` with
    ``max_new_tokens = min_new_tokens = 1`` (time to first token: prefill and one token) and with
    ``max_new_tokens = min_new_tokens = new_tokens``. Decode tokens/s is
    ``batch_size * (new_tokens - 1) / (mean full - mean first-token)``. Prompts are left-padded.

    Args:
        models: Name -> (model, tokenizer) of causal LMs on the same device.
        batch_size: Prompts per call.
        prompt_length: Tokens per synthetic prompt; truncation length for texts.
        new_tokens: Tokens generated per prompt (>= 2), always exactly this many.
        warmup: Un-timed calls after the cold call.
        min_iterations: Fewest timed calls per model and kind.
        min_seconds: Fewest timed seconds per model and kind.
        precision: As in :func:`benchmark_models`.
        inputs: "synthetic" or real texts, as in :func:`benchmark_models`.
        rounds: Interleaved rounds.
        seed: Seed of the synthetic prompts.
        record: Add the results to this record (from :func:`benchmark_models`) instead of a new one.
        load_s: As in :func:`benchmark_models` (for a new record).
        checkpoints: As in :func:`benchmark_models` (for a new record).

    Returns:
        The record, with a :class:`GenerationResult` per model.

    Raises:
        ConfigError: Fewer than 2 new tokens, or a bad budget, precision or inputs.
        ModelError: A model that does not generate exactly ``new_tokens`` tokens, or models on different devices.
    """
    import torch

    if new_tokens < 2:
        raise ConfigError(
            f"`benchmark.new_tokens` must be >= 2 to separate decoding from the first token "
            f"(got {new_tokens})"
        )
    _check_budget(warmup, min_iterations, min_seconds)
    device = _check_common(models, [batch_size], prompt_length, rounds, inputs, "prompt_length")
    dtype = autocast_dtype(precision, device)
    if record is None:
        record = BenchmarkRecord(
            settings=_settings(
                device=device,
                precision=precision,
                dtype=dtype,
                compile=False,
                batch_sizes=[batch_size],
                length=prompt_length,
                inputs=inputs,
                warmup=warmup,
                min_iterations=min_iterations,
                min_seconds=min_seconds,
                rounds=rounds,
                seed=seed,
            ),
            models={},
        )
    for name, (model, _) in models.items():
        if name not in record.models:
            record.models[name] = _model_entry(name, model, device, load_s, checkpoints)
    ids = (
        synthetic_ids(batch_size, prompt_length, _vocab_size(models), seed=seed)
        if inputs == "synthetic"
        else None
    )

    slots: dict[Hashable, _Slot] = {}
    prompt_widths: dict[str, int] = {}
    with _eval_mode([m for m, _ in models.values()]), torch.inference_mode(), _autocast(device, dtype):
        for name, (model, tokenizer) in models.items():
            pad_id = _pad_id(tokenizer, model)
            if ids is not None:
                arrays = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            else:
                arrays = _text_batch(inputs, batch_size, prompt_length, tokenizer, pad_id, left=True)
                arrays.pop("token_type_ids", None)
            batch = _to_device(arrays, device)
            prompt_widths[name] = arrays["input_ids"].shape[1]
            common = {"do_sample": False, "num_beams": 1, "use_cache": True, "pad_token_id": pad_id}
            for kind, count in (("ttft", 1), ("full", new_tokens)):
                kwargs = {**common, "max_new_tokens": count, "min_new_tokens": count}
                slots[(name, kind)] = _Slot(call=partial(model.generate, **batch, **kwargs), device=device)

        def check(key: Hashable, output: Any) -> None:
            model_name, kind = str(key[0]), str(key[1])  # type: ignore[index]
            expected = 1 if kind == "ttft" else new_tokens
            produced = output.shape[-1] - prompt_widths[model_name]
            if produced != expected:
                raise ModelError(
                    f"model `{model_name}` generated {produced} new tokens instead of {expected}",
                    hint="check its generation config (stop strings, max_length)",
                )

        _run_interleaved(
            slots,
            warmup=warmup,
            min_iterations=min_iterations,
            min_seconds=min_seconds,
            rounds=rounds,
            check=check,
        )
    for name in models:
        ttft, full = slots[(name, "ttft")], slots[(name, "full")]
        first = latency_stats(ttft.seconds, batch_size, tokens_per_batch=batch_size)
        whole = latency_stats(full.seconds, batch_size, tokens_per_batch=batch_size * new_tokens)
        decode_s = whole.mean_s - first.mean_s
        assert ttft.memory is not None and full.memory is not None
        memory = full.memory if full.memory.rss_peak_bytes >= ttft.memory.rss_peak_bytes else ttft.memory
        record.models[name].generation.append(
            GenerationResult(
                batch_size=batch_size,
                prompt_length=prompt_widths[name],
                new_tokens=new_tokens,
                cold_s=full.cold_s,
                time_to_first_token=first,
                generate=whole,
                decode_tokens_per_s=batch_size * (new_tokens - 1) / decode_s if decode_s > 0 else None,
                memory=memory,
            )
        )
    return record
