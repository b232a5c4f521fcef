"""The ``eval_results`` section: opt-in ``.eval_results/*.yaml`` entries for a Hub benchmark leaderboard.

The Hub shows such an entry on the model page and on the benchmark dataset's leaderboard when ``dataset_id`` is a
benchmark dataset registered on the Hub (the Hub checks this when the file is pushed, not cardgen).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalResultsConfig:
    """Which benchmark the run's test result belongs to; off while ``dataset_id`` is unset."""

    dataset_id: str | None = None  # the benchmark dataset's Hub id, e.g. stanfordnlp/sst2
    task_id: str = "default"  # the task within the benchmark
    metric: str | None = None  # the test metric to report (default: the task's headline metric)
    notes: str | None = None  # e.g. "fine-tuned with cardgen, max_length 64"

    def _checks(self) -> list[tuple[str, str]]:
        if self.dataset_id is not None and "/" not in self.dataset_id.strip("/"):
            return [("dataset_id", f"must be a Hub dataset id NAMESPACE/NAME (got {self.dataset_id!r})")]
        if not self.task_id.strip():
            return [("task_id", "must not be empty")]
        return []
