"""The config's sections: one frozen dataclass each, with its limits in ``_checks`` (see ``schema``).

Types come from the annotations. ``RunConfig`` (in the package face) holds one of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cardgen.config.gate import RequireRule
from cardgen.config.general import GeneralDataConfig

TASKS = ("text-classification", "masked-lm", "causal-lm", "question-answering", "seq2seq")
TASK_ALIASES = {
    "classification": "text-classification",
    "sequence-classification": "text-classification",
    "fill-mask": "masked-lm",
    "mlm": "masked-lm",
    "text-generation": "causal-lm",
    "clm": "causal-lm",
    "qa": "question-answering",
    "extractive-qa": "question-answering",
    "translation": "seq2seq",
    "summarization": "seq2seq",
    "text2text-generation": "seq2seq",
    "text2text": "seq2seq",
}

# The speed benchmark's generation scenario (fixed, so runs compare): prompt tokens and new tokens.
PROMPT_LENGTH = 32
NEW_TOKENS = 16  # generated per prompt for the causal-LM decode speed


@dataclass(frozen=True)
class ModelConfig:
    """The checkpoint to fine-tune or document."""

    name_or_path: str = ""
    revision: str | None = None
    gguf_file: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    quantization: Literal["4bit"] | None = None  # load the base in 4-bit (bitsandbytes NF4; CUDA): QLoRA with peft:

    def _checks(self) -> list[tuple[str, str]]:
        return [("name_or_path", "is required: a local directory or a Hub id")] if not self.name_or_path else []


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how they map to the task."""

    dataset: str | None = None  # Hub dataset name (or a local dataset directory)
    dataset_config: str | None = None
    revision: str | None = None
    train: str | None = None  # local files: csv, tsv, json, jsonl, parquet, txt
    validation: str | None = None
    test: str | None = None
    splits: dict[str, str] = field(default_factory=dict)  # cardgen split -> Hub split name
    format: Literal["csv", "tsv", "json", "jsonl", "parquet", "text"] | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    label_names: list[str] | None = None
    validation_size: float = 0.1
    test_size: float = 0.1
    split_seed: int = 42
    max_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    name: str | None = None  # human-readable dataset name for the card
    general: GeneralDataConfig | None = None  # the forgetting check: a set outside the training domain

    def _checks(self) -> list[tuple[str, str]]:
        errors = []
        if not (self.dataset or self.train or self.test or self.validation):
            errors.append(("train", "is required: give data.train (a local file) or data.dataset (a Hub dataset)"))
        for key in ("validation_size", "test_size"):
            value = getattr(self, key)
            if not 0 <= value < 1:
                errors.append((key, f"must be in [0, 1) (got {value})"))
        if self.max_length < 8:
            errors.append(("max_length", f"must be >= 8 (got {self.max_length})"))
        for key in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, key)
            if value is not None and value < 1:
                errors.append((key, f"must be >= 1 (got {value})"))
        if self.label_names is not None and len(set(self.label_names)) != len(self.label_names):
            errors.append(("label_names", "must not repeat a name"))
        return errors


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters; mapped onto transformers.TrainingArguments."""

    learning_rate: float = 5e-5
    num_epochs: float = 3.0
    max_steps: int = -1
    train_batch_size: int = 16
    eval_batch_size: int = 32
    seed: int = 42
    weight_decay: float = 0.0
    warmup: float = 0.0  # steps when >= 1, a ratio of the total steps when < 1 (transformers 5 semantics)
    lr_scheduler: str = "linear"
    optimizer: str = "adamw_torch"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, more time
    early_stopping_patience: int | None = None
    metric_for_best_model: str | None = None  # task default when unset
    logging_steps: int | None = None  # unset: about LOG_POINTS training-loss points over the whole run
    save_total_limit: int = 2
    keep_checkpoints: bool = False
    extra_args: dict[str, Any] = field(default_factory=dict)  # passed to TrainingArguments as they are
    seeds: list[int] | None = None  # train once per seed (issue 16); `seed` is unused then
    report_to: list[str] = field(default_factory=list)  # experiment trackers: tensorboard, wandb, mlflow, trackio

    def _checks(self) -> list[tuple[str, str]]:
        errors = []
        errors += _tracker_checks(self.report_to)
        if self.logging_steps is not None and self.logging_steps < 1:
            errors.append(("logging_steps", f"must be >= 1 (got {self.logging_steps})"))
        if self.seeds is not None and (len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds)):
            errors.append(("seeds", f"must list at least 2 different seeds (got {self.seeds}); one seed is "
                                    "`training.seed`"))
        if self.learning_rate <= 0:
            errors.append(("learning_rate", f"must be > 0 (got {self.learning_rate})"))
        if self.num_epochs <= 0 and self.max_steps <= 0:
            errors.append(("num_epochs", f"must be > 0 (got {self.num_epochs})"))
        for key in ("train_batch_size", "eval_batch_size", "gradient_accumulation_steps", "save_total_limit"):
            if getattr(self, key) < 1:
                errors.append((key, f"must be >= 1 (got {getattr(self, key)})"))
        if self.weight_decay < 0:
            errors.append(("weight_decay", f"must be >= 0 (got {self.weight_decay})"))
        if self.warmup < 0:
            errors.append(("warmup", f"must be >= 0 (got {self.warmup})"))
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            errors.append(("early_stopping_patience", f"must be >= 1 (got {self.early_stopping_patience})"))
        if not 0 <= self.adam_beta1 < 1 or not 0 <= self.adam_beta2 < 1:
            errors.append(("adam_beta1", "adam_beta1 and adam_beta2 must be in [0, 1)"))
        for key in self.extra_args:
            if str(key) == "token" or str(key).endswith("_token"):  # hub_token, push_to_hub_token
                errors.append((f"extra_args.{key}", "must not be set: config.yaml, run.json and the card would store "
                                                    "the secret (set HF_TOKEN in the environment instead)"))
        return errors


# Experiment trackers the Trainer reports to (transformers' integrations) and the module each needs installed.
TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
            "trackio": ("trackio",), "comet_ml": ("comet_ml",), "neptune": ("neptune",), "clearml": ("clearml",),
            "dvclive": ("dvclive",), "swanlab": ("swanlab",), "azure_ml": ("azureml",), "dagshub": ("dagshub",),
            "flyte": ("flytekit",)}
LOG_POINTS = 30  # training-loss points over a run when training.logging_steps is unset


def _tracker_checks(names: list[str]) -> list[tuple[str, str]]:
    from cardgen.config.schema import nearest

    known = ", ".join(TRACKERS)
    for name in names:
        if name not in TRACKERS:
            hint = nearest(name, TRACKERS) or f" (known: {known})"
            return [("report_to", f"names {name!r}, which is not a tracker transformers reports to{hint}")]
    return []


@dataclass(frozen=True)
class EvaluationConfig:
    """The final, held-out evaluation."""

    split: str = "test"
    batch_size: int = 32

    def _checks(self) -> list[tuple[str, str]]:
        return [("batch_size", f"must be >= 1 (got {self.batch_size})")] if self.batch_size < 1 else []


@dataclass(frozen=True)
class CompareConfig:
    """Base model versus fine-tuned: statistics on the same examples."""

    enabled: bool = True
    bootstrap_samples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    probe_max_train: int = 20000  # examples used to fit the linear probe
    # Permutations behind every permutation p-value (the smallest p-value is 1 / (1 + permutations)); cheap: the
    # classification tests draw counts of a K^3 table, the per-document ones one matrix product per block.
    permutations: int = 10000
    require: list[RequireRule] = field(default_factory=list)  # the ship gate: `cardgen run` exits 3 if one fails

    def _checks(self) -> list[tuple[str, str]]:
        errors = []
        if self.bootstrap_samples < 100:
            errors.append(("bootstrap_samples", f"must be >= 100 (got {self.bootstrap_samples})"))
        if self.permutations < 99:
            errors.append(("permutations", f"must be >= 99 (got {self.permutations})"))
        if not 0.5 < self.confidence < 1:
            errors.append(("confidence", f"must be in (0.5, 1) (got {self.confidence})"))
        return errors


@dataclass(frozen=True)
class BenchmarkConfig:
    """Speed and memory of base and fine-tuned, measured in the same process."""

    enabled: bool = True
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    sequence_length: int = 64
    warmup: int = 3
    min_iterations: int = 10
    min_seconds: float = 2.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False

    def _checks(self) -> list[tuple[str, str]]:
        errors = []
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            errors.append(("batch_sizes", f"must be a non-empty list of sizes >= 1 (got {self.batch_sizes})"))
        if self.min_iterations < 1:
            errors.append(("min_iterations", f"must be >= 1 (got {self.min_iterations})"))
        return errors


@dataclass(frozen=True)
class CardConfig:
    """What goes into the card beyond the measurements."""

    model_name: str | None = None
    base_model: str | None = None  # Hub id to declare when model.name_or_path is a local copy of it
    license: str = "apache-2.0"
    language: list[str] = field(default_factory=lambda: ["en"])
    tags: list[str] = field(default_factory=list)
    template: str | None = None
    description: str | None = None
    intended_uses: str | None = None
    limitations: str | None = None
    citation: str | None = None
    inferred: list[str] = field(default_factory=list)  # what `cardgen run --model/--data` inferred; the card says it
    examples_per_label: int = 2  # test examples per label in the card's table and widget (0: none)

    def _checks(self) -> list[tuple[str, str]]:
        if self.examples_per_label < 0:
            return [("examples_per_label", f"must be >= 0 (got {self.examples_per_label})")]
        return []


@dataclass(frozen=True)
class LMConfig:
    """Masked- and causal-LM settings (tasks masked-lm and causal-lm)."""

    block_size: int | None = None  # causal LM: training block and evaluation window; default data.max_length
    stride: int | None = None  # causal LM: new tokens predicted per evaluation window; default block_size // 2
    mlm_probability: float = 0.15  # masked LM: share of tokens (or words) selected for prediction
    whole_word_masking: bool = False
    mask_seed: int = 0  # masked LM: evaluation masks depend only on this seed and the example's position
    prompts: list[str] = field(default_factory=list)  # causal LM: greedy generations shown in the card
    max_new_tokens: int = 40

    def _checks(self) -> list[tuple[str, str]]:
        errors = []
        if self.block_size is not None and self.block_size < 2:
            errors.append(("block_size", f"must be >= 2 (got {self.block_size})"))
        if self.stride is not None and self.stride < 1:
            errors.append(("stride", f"must be >= 1 (got {self.stride})"))
        if self.stride is not None and self.block_size is not None and self.stride > self.block_size:
            errors.append(("stride", f"must be <= lm.block_size ({self.block_size}) (got {self.stride})"))
        if not 0 < self.mlm_probability < 1:
            errors.append(("mlm_probability", f"must be in (0, 1) (got {self.mlm_probability})"))
        if self.max_new_tokens < 1:
            errors.append(("max_new_tokens", f"must be >= 1 (got {self.max_new_tokens})"))
        if any(not p.strip() for p in self.prompts):
            errors.append(("prompts", "must not contain empty prompts"))
        return errors


@dataclass(frozen=True)
class QAConfig:
    """Extractive question answering settings (SQuAD format)."""

    question_column: str = "question"
    context_column: str = "context"
    answers_column: str = "answers"  # {"text": [...], "answer_start": [...]} per row
    id_column: str = "id"
    doc_stride: int = 128  # tokens of overlap between windows of a context longer than data.max_length
    max_answer_length: int = 30  # tokens
    n_best: int = 20  # start and end candidates considered per window
    version_2: bool = False  # SQuAD v2: questions may have no answer in the context

    def _checks(self) -> list[tuple[str, str]]:
        errors = []
        for key in ("doc_stride", "max_answer_length", "n_best"):
            if getattr(self, key) < 1:
                errors.append((key, f"must be >= 1 (got {getattr(self, key)})"))
        return errors


@dataclass(frozen=True)
class OutputConfig:
    """Where results go."""

    dir: str = "runs/cardgen-run"
    overwrite: bool = False
    save_model: bool = True
    overwrite_card: bool = False  # replace a README.md that holds no cardgen sections (written by hand)
