"""The forgetting check's record: both models on a held-out set outside the training domain (``data.general``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cardgen.record.evaluation import Comparison, EvaluationRecord


@dataclass
class GeneralRecord:
    """Base and fine-tuned model on ``data.general``, scored like the target task, compared with intervals.

    ``comparison`` is None when there is nothing to compare with (no training, or a base whose head is newly
    initialised); ``note`` then says why.
    """

    name: str  # what the card calls the set
    source: str  # file path or Hub dataset
    num_examples: int
    fingerprint: str  # sha256 of the examples in order (as the splits' fingerprints)
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of the file bytes
    label_distribution: dict[str, int] = field(default_factory=dict)
    base: EvaluationRecord | None = None
    fine_tuned: EvaluationRecord | None = None  # the run's model (fine-tuned, or as loaded without training)
    comparison: Comparison | None = None
    note: str | None = None
