"""``data.general``: the forgetting check's held-out set, outside the training domain, scored for both models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class GeneralDataConfig:
    """A set the model was not trained for (e.g. news when training on movie reviews and tweets).

    ``data.general: path/to/file.jsonl`` is shorthand for ``data.general.file``. Columns default to the task's
    (``data.text_column``, ``data.label_column``); a classifier's labels must be among ``data.label_names``.
    """

    file: str | None = None  # a local file: csv, tsv, json, jsonl, parquet, txt
    dataset: str | None = None  # or a Hub dataset (or a saved dataset directory)
    dataset_config: str | None = None
    split: str = "test"  # the dataset's split to use
    format: Literal["csv", "tsv", "json", "jsonl", "parquet", "text"] | None = None
    name: str | None = None  # what the card calls the set
    text_column: str | None = None
    label_column: str | None = None
    max_samples: int | None = None  # a seeded subset (data.split_seed) of at most this many examples

    def _checks(self) -> list[tuple[str, str]]:
        if bool(self.file) == bool(self.dataset):
            return [("file", "give exactly one of file (a local file) and dataset (a Hub dataset)")]
        if self.max_samples is not None and self.max_samples < 1:
            return [("max_samples", f"must be >= 1 (got {self.max_samples})")]
        return []
