"""One module per task. Each exposes the same plain functions and constants (see :class:`Task`)."""

from __future__ import annotations

import importlib
from typing import Any, Protocol

MODULES = {
    "text-classification": "cardgen.tasks.classification",
    "masked-lm": "cardgen.tasks.masked_lm",
    "causal-lm": "cardgen.tasks.causal_lm",
    "question-answering": "cardgen.tasks.question_answering",
    "seq2seq": "cardgen.tasks.seq2seq",
}


class Task(Protocol):
    """What the pipeline needs from a task module (module-level names, not a class to inherit from)."""

    NAME: str  # cardgen's task name, e.g. "text-classification"
    PIPELINE_TAG: str  # the Hub's pipeline_tag
    DEFAULT_METRIC: str  # metric for the best model when the config names none
    GREATER_IS_BETTER: bool

    def prepare_data(self, cfg: Any, tokenizer: Any, need_train: bool, model_config: Any = None) -> Any: ...
    def load_model(self, cfg: Any, label_names: list[str] | None = None, model_cfg: Any = None,
                   tokenizer: Any = None) -> Any: ...
    def train_dataset(self, frame: Any, tokenizer: Any, cfg: Any, split: str) -> Any: ...
    def collator(self, tokenizer: Any, cfg: Any) -> Any: ...
    def trainer_metrics(self, cfg: Any, label_names: list[str]) -> Any: ...
    def evaluate(self, loaded: Any, frame: Any, cfg: Any, label_names: list[str], name: str, split: str,
                 progress: Any = None) -> Any: ...


def get_task(name: str) -> Task:
    """The task module for ``name`` (one of config.TASKS)."""
    return importlib.import_module(MODULES[name])  # type: ignore[return-value]
