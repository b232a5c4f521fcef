"""The run record: typed dataclasses that every stage hands to the next, and their JSON form (run.json).

The card is a pure function of :class:`RunRecord`, so a card can be re-rendered, diffed or pushed without
re-training. This module imports neither torch nor transformers.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

from cardgen.errors import OutputError

SCHEMA_VERSION = "1.0"
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- benchmark records

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


# ---------------------------------------------------------------------------------------------- run records

@dataclass
class EnvironmentRecord:
    """Versions and hardware: what a stranger needs to reproduce the numbers."""

    python: str
    platform: str
    packages: dict[str, str]  # name -> version (torch, transformers, datasets, ...)
    cuda: str | None = None  # CUDA version torch was built with, when any
    device: str = "cpu"  # "cpu" or "cuda:0" ...
    device_name: str = ""  # CPU model or GPU name
    num_devices: int = 1
    cpu_count: int = 1
    torch_threads: int = 1
    memory_gb: float | None = None
    git_commit: str | None = None


@dataclass
class SplitRecord:
    """One split of the data as it went into the model."""

    name: str
    num_examples: int
    source: str  # file path, Hub dataset name, or "<file> (split seed 42)"
    fingerprint: str  # sha256 of the examples (text and label) in order
    label_distribution: dict[str, int] = field(default_factory=dict)
    num_truncated: int = 0  # examples longer than max_length that were cut
    token_length: dict[str, float] = field(default_factory=dict)  # min/mean/p50/p95/max


@dataclass
class DataRecord:
    """What the model was trained and evaluated on."""

    source: str
    text_column: str
    label_column: str | None
    label_names: list[str]
    splits: dict[str, SplitRecord]
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of the file bytes
    hub_dataset: str | None = None
    hub_config: str | None = None
    hub_revision: str | None = None
    max_length: int = 128
    report: dict[str, Any] = field(default_factory=dict)  # duplicates, overlap: filled by data checks


@dataclass
class ModelRecord:
    """The checkpoint: where it came from and what transformers said when it was loaded."""

    base_model: str
    task: str
    pipeline_tag: str
    architecture: str
    num_parameters: int
    revision: str | None = None
    gguf_file: str | None = None
    newly_initialized: list[str] = field(default_factory=list)
    trust_remote_code: bool = False
    size_on_disk_bytes: int | None = None
    saved_to: str | None = None  # relative path of the saved fine-tuned model, "" for the output dir itself
    notes: list[str] = field(default_factory=list)


@dataclass
class EpochRow:
    """One row of the per-epoch table, as the Trainer's own card shows it."""

    epoch: float
    step: int
    training_loss: float | None
    validation_loss: float | None
    metrics: dict[str, float] = field(default_factory=dict)  # accuracy, f1, ... (no eval_ prefix)


@dataclass
class TrainingRecord:
    """What the Trainer did."""

    arguments: dict[str, Any]  # every effective TrainingArguments value, JSON-safe
    non_default: list[str]  # names of arguments that differ from transformers' defaults
    hyperparameters: dict[str, Any]  # the Trainer card's list, in its order and form
    epochs: list[EpochRow]
    metric_for_best_model: str
    greater_is_better: bool
    best_epoch: float | None = None
    best_step: int | None = None
    best_metric: float | None = None
    overfitting: bool = False
    overfitting_note: str | None = None
    train_loss: float | None = None
    train_runtime_s: float | None = None
    train_samples_per_second: float | None = None
    total_flos: float | None = None
    global_step: int = 0
    num_devices: int = 1
    total_train_batch_size: int = 0
    total_eval_batch_size: int = 0
    stopped_early: bool = False
    resumed_from: str | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. a plan far longer than intended


@dataclass
class EvaluationRecord:
    """A model's results on one split, with per-example outputs so every number can be recomputed."""

    model: str  # "fine-tuned" or "base"
    split: str
    num_examples: int
    metrics: dict[str, float]
    labels: list[int] = field(default_factory=list)
    predictions: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # per-example loss where the task has one
    extra: dict[str, Any] = field(default_factory=dict)  # task-specific (e.g. generations, n_tokens)
    method: str = "direct"  # "direct", "linear-probe", "zero-shot"
    runtime_s: float | None = None


@dataclass
class RunRecord:
    """The whole run; saved as run.json and the only input of the card."""

    config: dict[str, Any]
    environment: EnvironmentRecord
    model: ModelRecord
    data: DataRecord
    evaluation: EvaluationRecord | None = None
    training: TrainingRecord | None = None
    base_evaluation: EvaluationRecord | None = None
    comparison: Comparison | None = None
    benchmark: BenchmarkRecord | None = None  # speed and size of base and fine-tuned (cardgen.bench_record)
    status: str = "completed"  # "completed", "interrupted", "failed at <stage>"
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    created_at: str = ""
    cardgen_version: str = ""
    schema_version: str = SCHEMA_VERSION
    extras: dict[str, Any] = field(default_factory=dict)
    # The names this run wrote into its output directory, so that --overwrite removes exactly those.
    outputs: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# JSON form


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain JSON-safe values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def from_dict(cls: type[T], data: Any) -> T:
    """Build dataclass ``cls`` from :func:`to_dict` output, recursing by type hints; unknown keys are kept out."""
    return _convert(cls, data)


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(members[0], value) if len(members) == 1 else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        kwargs = {k: _convert(hints[k], v) for k, v in value.items() if k in names}
        return tp(**kwargs)
    if origin is list:
        item = (typing.get_args(tp) or (Any,))[0]
        return [_convert(item, v) for v in value]
    if origin is dict:
        args = typing.get_args(tp)
        val_tp = args[1] if len(args) == 2 else Any
        return {k: _convert(val_tp, v) for k, v in value.items()}
    return value


def save_record(record: RunRecord, path: str | Path) -> None:
    """Write run.json atomically (temp file, then rename)."""
    from cardgen.files import atomic_write_text

    atomic_write_text(Path(path), json.dumps(to_dict(record), indent=2, ensure_ascii=False) + "\n")


def load_record(path: str | Path) -> RunRecord:
    """Read run.json, checking the schema version.

    Raises:
        OutputError: the file is missing, is not JSON, or has a newer schema than this cardgen reads.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "run.json"
    if not path.is_file():
        raise OutputError(f"no run record at {path}", "give the output directory of a `cardgen run`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise OutputError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})", "re-run `cardgen run`") from exc
    not_a_record = f"{path} is not a cardgen run record (schema {SCHEMA_VERSION})"
    hint = "give the run.json that `cardgen run` wrote, or re-run `cardgen run`"
    if not isinstance(data, dict):
        raise OutputError(f"{not_a_record}: it holds a JSON {type(data).__name__}, not an object", hint)
    major = str(data.get("schema_version", "0")).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise OutputError(
            f"{path} has schema version {data.get('schema_version')}, this cardgen reads {SCHEMA_VERSION}",
            "use the cardgen version that wrote it",
        )
    missing = [f.name for f in dataclasses.fields(RunRecord) if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and not isinstance(data.get(f.name), dict)]
    if missing:
        raise OutputError(f"{not_a_record}: `{missing[0]}` is missing or not an object", hint)
    try:
        return from_dict(RunRecord, data)
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        raise OutputError(f"{not_a_record}: {type(exc).__name__}: {exc}", hint) from exc


# ---------------------------------------------------------------------------------------------------------------
# Base model versus fine-tuned (filled by cardgen.compare)


@dataclass
class MetricComparison:
    """One metric of the base and the fine-tuned model on the same examples, with intervals and a paired test.

    ``base``, ``fine_tuned`` and ``delta`` are ``[point, low, high]``; ``delta`` is fine-tuned minus base, its
    interval from the same bootstrap resamples as the two models' intervals (paired).
    """

    key: str  # "accuracy", "f1_macro", ... or "f1" / "precision" / "recall" for a per-class row
    name: str  # display name
    base: list[float]
    fine_tuned: list[float]
    delta: list[float]
    p_value: float | None = None
    test: str | None = None  # the paired test behind p_value
    label: str | None = None  # the class of a per-class row
    support: int | None = None  # gold examples of that class


@dataclass
class FlipExample:
    """An example whose correctness changed between the base and the fine-tuned model (text shortened)."""

    index: int  # position in the evaluation split
    text: str
    label: str
    base_prediction: str
    fine_tuned_prediction: str


@dataclass
class ProbeRecord:
    """How the linear-probe baseline was fitted: logistic regression on the frozen base model's features."""

    features: str  # e.g. "masked mean of the last hidden state"
    feature_dim: int
    classifier: str
    train_split: str
    num_train: int
    train_accuracy: float
    seed: int
    seconds: float


@dataclass
class Comparison:
    """The base model against the fine-tuned one on exactly the same examples (see ``cardgen.compare``)."""

    task: str
    split: str
    num_examples: int
    base_model: str
    fine_tuned_model: str
    method: str  # how the base was evaluated: "linear-probe" or "zero-shot"
    confidence: float
    bootstrap_samples: int
    permutations: int
    seed: int
    interval_method: str
    metrics: list[MetricComparison]
    per_class: list[MetricComparison] = field(default_factory=list)
    tests: dict[str, str] = field(default_factory=dict)  # metric key -> the test behind its p-value
    wrong_to_right: int = 0
    right_to_wrong: int = 0
    wrong_to_right_examples: list[FlipExample] = field(default_factory=list)
    right_to_wrong_examples: list[FlipExample] = field(default_factory=list)
    probe: ProbeRecord | None = None
    max_length: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # headline numbers for `--json` summaries
    seconds: float | None = None
    # Only for a standalone `cardgen compare` (in a run they are RunRecord.base_evaluation and .evaluation):
    base_evaluation: EvaluationRecord | None = None
    fine_tuned_evaluation: EvaluationRecord | None = None
    # Only for a standalone `cardgen compare`: the base FT's run.json records (None: FT is no `cardgen run` output)
    # and what the user should know, e.g. that BASE is not that model.
    recorded_base_model: str | None = None
    warnings: list[str] = field(default_factory=list)
