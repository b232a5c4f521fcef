"""A model's evaluation on one split, and the comparison of the base model with the fine-tuned one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cardgen.record.generation import GenerationComparison


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
    # Generation tasks: the largest gains and losses by sentence chrF, signatures, sacreBLEU-style bootstrap p-values.
    generation: GenerationComparison | None = None
