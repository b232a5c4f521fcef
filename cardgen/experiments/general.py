"""The forgetting check: both models on ``data.general``, a held-out set outside the training domain.

The set is prepared by the task exactly like the run's own splits (columns, labels, a seeded subset) before
anything is written, so a bad file fails at once. It is scored like the target task (perplexity and bits per byte
for LMs, accuracy for classifiers): tasks that evaluate their base before training (LM, QA) score the base on it
then; a classifier's base is scored after training by the comparison stage's own method (zero-shot or the linear
probe fitted on the train split). The comparison stage then gives the paired intervals, so a fine-tune that got
better on its task and worse everywhere else shows as a significant loss here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cardgen.config.gate import GENERAL
from cardgen.console import Progress
from cardgen.errors import DataError
from cardgen.record import EvaluationRecord, GeneralRecord, RunRecord

if TYPE_CHECKING:
    import pandas as pd

    from cardgen.config import RunConfig
    from cardgen.data import PreparedData


@dataclass
class GeneralSet:
    """The prepared general set, and the base model's evaluation of it when made before training."""

    record: GeneralRecord
    frame: pd.DataFrame
    base: EvaluationRecord | None = None


def prepare_general(cfg: RunConfig, task: Any, tokenizer: Any, model_config: Any,
                    label_names: list[str]) -> GeneralSet | None:
    """Load and check ``data.general`` with the task's own data code (None when the config has none).

    Raises:
        DataError: The file is missing or unreadable, a column is missing, or a label is not among the run's.
    """
    general = cfg.data.general
    if general is None:
        return None
    d = cfg.data
    data = dataclasses.replace(
        d, dataset=general.dataset, dataset_config=general.dataset_config, revision=None, train=None,
        validation=None, test=general.file, splits={"test": general.split} if general.dataset else {},
        format=general.format, text_column=general.text_column or d.text_column,
        label_column=general.label_column or d.label_column, label_names=list(label_names) or d.label_names,
        # a Hub dataset's other splits load too: keep them to one row (only "test" is used)
        max_train_samples=1, max_eval_samples=general.max_samples, general=None,
    )
    try:
        prepared = task.prepare_data(dataclasses.replace(cfg, data=data), tokenizer, False, model_config)
    except DataError as exc:  # the task's data code names the "test" split and data.test: say data.general
        message = exc.message.replace("the test data", "the general data").replace("test split", "general set")
        raise DataError(f"data.general: {message}",
                        "fix data.general (file or dataset, text_column, label_column) or the file itself") from exc
    split = prepared.record.splits["test"]
    source = general.file or general.dataset or ""
    name = general.name or (prepared.record.source if not general.file else _file_name(general.file))
    record = GeneralRecord(name=name, source=source, num_examples=split.num_examples, fingerprint=split.fingerprint,
                           files=dict(prepared.record.files), label_distribution=dict(split.label_distribution))
    return GeneralSet(record=record, frame=prepared.frames["test"])


def _file_name(path: str) -> str:
    from pathlib import Path

    return Path(path).stem


def scoring_config(cfg: RunConfig) -> RunConfig:
    """The run's config for scoring the general set: no greedy generations (they belong to the target task)."""
    return dataclasses.replace(cfg, lm=dataclasses.replace(cfg.lm, prompts=[]))


def evaluate_general_base(cfg: RunConfig, task: Any, loaded: Any, general: GeneralSet | None,
                          progress: Progress) -> None:
    """Before training: the base model on the general set, for the tasks that evaluate their own base (LM, QA)."""
    if general is None or cfg.training is None or not hasattr(task, "evaluate_base"):
        return
    general.base = task.evaluate_base(loaded, general.frame, scoring_config(cfg), [], GENERAL, progress)


def general_stage(cfg: RunConfig, task: Any, loaded: Any, data: PreparedData, general: GeneralSet,
                  record: RunRecord, progress: Progress) -> GeneralRecord:
    """After training: the run's model on the general set, the base (classification), and the paired comparison.

    Returns:
        The general set's record with both evaluations and the comparison (or a note saying why there is none).
    """
    from cardgen.compare.stage import compare_stage
    from cardgen.data import PreparedData

    scoring = scoring_config(cfg)
    out = general.record
    name = "fine-tuned" if record.training is not None else "model"
    out.fine_tuned = task.evaluate(loaded, general.frame, scoring, data.label_names, name, GENERAL, progress)
    if record.training is None:
        out.note = "no training: the model was only evaluated, there is no base to compare it with"
        return out
    frames = {GENERAL: general.frame}
    if "train" in data.frames:
        frames["train"] = data.frames["train"]  # the linear probe's training examples
    view = PreparedData(frames=frames, label_names=data.label_names, record=data.record)
    out.base, out.comparison = compare_stage(scoring, task, loaded, view, training=record.training,
                                             evaluation=out.fine_tuned, model=record.model,
                                             base_evaluation=general.base, progress=progress)
    if out.comparison is None and out.base is not None and out.base.extra.get("meaningful") is False:
        out.note = ("the base model's numbers are not meaningful (its head is newly initialised), so there is no "
                    "interval")
    return out
