"""The run record: what a run loaded, trained and measured. ``RunRecord`` is saved as run.json and is the only
input of the card."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cardgen.record.adapter import AdapterRecord, ResourcesRecord
from cardgen.record.bench import BenchmarkRecord
from cardgen.record.curve import LogPoint
from cardgen.record.energy import EnergyRecord
from cardgen.record.evaluation import Comparison, EvaluationRecord
from cardgen.record.examples import CardExample
from cardgen.record.experiments import ExperimentsRecord
from cardgen.record.general import GeneralRecord
from cardgen.record.verdict import Verdict

SCHEMA_VERSION = "1.0"


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
    hub_sha: str | None = None  # the Hub dataset's commit that was loaded (when the Hub said)


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
    commit_sha: str | None = None  # the base model's Hub commit that was loaded (None for a local directory)


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
    curve: list[LogPoint] = field(default_factory=list)  # every training log entry (loss, learning rate)
    trackers: dict[str, str] = field(default_factory=dict)  # tracker -> run URL, or its local log directory


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
    experiments: ExperimentsRecord | None = None  # seeds and sweeps (cardgen.record.experiments)
    general: GeneralRecord | None = None  # the forgetting check (data.general)
    verdict: Verdict | None = None  # the ship gate (compare.require)
    energy: EnergyRecord | None = None  # codecarbon's energy and emissions per stage
    adapter: AdapterRecord | None = None  # the LoRA adapter trained or loaded (None: every weight is the model's)
    resources: ResourcesRecord | None = None  # trainable parameters, precision, checkpointing, memory peaks
    examples: list[CardExample] = field(default_factory=list)  # evaluation examples the card shows
