"""Records of the speed benchmark: settings, per-model results, latency and memory statistics."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    time_to_first_token: LatencyStats  # generate() with max_new_tokens = min_new_tokens = 1: prefill + 1 token
    generate: LatencyStats  # generate() with max_new_tokens = min_new_tokens = new_tokens
    decode_tokens_per_s: float | None  # batch * (new_tokens - 1) / (generate.mean_s - ttft.mean_s)
    memory: MemoryStats


@dataclass
class EvalSetResult:
    """The evaluation engine over real examples of the eval split: length-sorted batches, dynamic padding.

    ``latency`` times whole passes over the examples (its ``batch_size`` is the number of examples, so its
    samples/s and tokens/s are the pass's throughput; tokens are real, non-padding tokens).
    """

    split: str
    num_examples: int  # the first examples of the split, in split order
    batch_size: int  # examples per forward pass
    max_length: int  # truncation length
    real_tokens: int
    processed_tokens: int  # rows x padded width over all batches
    padding_efficiency: float  # real / processed
    cold_s: float  # the first pass
    latency: LatencyStats
    memory: MemoryStats


@dataclass
class ModelBenchmark:
    """Everything measured for one model."""

    name: str
    device: str
    num_parameters: int
    size_on_disk_bytes: int | None = None  # files of the checkpoint directory (or the GGUF file)
    load_s: float | None = None  # from_pretrained of the checkpoint, in this process
    batches: list[BatchResult] = field(default_factory=list)
    generation: list[GenerationResult] = field(default_factory=list)
    dtype: str = ""  # of the weights, e.g. "float32"
    checkpoint: str | None = None  # where it was loaded from (a path, a Hub id, or "" when not saved yet)
    eval_set: EvalSetResult | None = None


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
    cpu_count: int | None = None  # CPU cores this process may use
    cardgen_version: str = ""


@dataclass
class BenchmarkRecord:
    """The benchmark stage's output: settings and one entry per model (base and fine-tuned)."""

    settings: BenchmarkSettings
    models: dict[str, ModelBenchmark]
    seconds: float | None = None  # wall time of the whole benchmark (loading the base model included)
    load_average: list[float] | None = None  # 1, 5 and 15 minute load averages when it ended (Unix)
