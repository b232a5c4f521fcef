"""``CardgenCallback``: a transformers TrainerCallback that gives an existing training script a run record and a card.

Add it to any ``Trainer``::

    from cardgen import CardgenCallback

    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=valid,
                      callbacks=[CardgenCallback("runs/my-model", base_model="bert-base-uncased",
                                                 dataset_name="my reviews", license="apache-2.0")])
    trainer.train()                                    # writes run.json, README.md and plots at the end
    trainer.evaluate(test, metric_key_prefix="test")   # optional: the card then reports this held-out split

The record is built from what the Trainer knows: its arguments (the Trainer card's hyperparameters and every
non-default value), the per-epoch rows of its log history, the evaluation results, the model and datasets it was
given, and the environment. Only the main process writes. The card is rendered by :mod:`cardgen.card`, exactly as
for ``cardgen run``, and merged into an existing hand-edited README.md (text outside the markers is kept).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from cardgen.errors import CardgenError
from cardgen.record import (
    DataRecord,
    EvaluationRecord,
    ModelRecord,
    RunRecord,
    SplitRecord,
    TrainingRecord,
)
from cardgen.tasks.catalog import TASK_BY_CLASS
from cardgen.training_record import training_record

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("text", "sentence", "content", "review", "document")
_SPEED_KEYS = ("runtime", "samples_per_second", "steps_per_second", "model_preparation_time")
MAX_ROWS_SCANNED = 500_000  # datasets larger than this get no token statistics or duplicate checks


class CardgenCallback(TrainerCallback):  # type: ignore[misc]
    """Write ``run.json``, ``README.md`` and plots into ``output_dir`` when training ends.

    Args:
        output_dir: Where to write; default the Trainer's ``output_dir``.
        model_name: The card's title; default the directory's name.
        base_model: Hub id of the model that was fine-tuned; default the model's ``name_or_path``.
        dataset_name: What the data is called in the card and in model-index.
        hub_dataset: Hub id of the dataset, when it is one (linked from the card).
        license: The card's license (e.g. "apache-2.0").
        language: Language code(s) of the data.
        tags: Extra tags for the card's metadata.
        description: The "Model description" text (otherwise a TODO for the author).
        intended_uses: The "Intended uses" text.
        limitations: The "Limitations" text.
        citation: A citation block.
        task: cardgen's task name; default inferred from the model class.
        max_length: The truncation length the script tokenized with, for the card's data section.
        template: A Jinja template to render instead of the built-in one.
        plots: Draw the training curves and, where the record allows, other plots.
    """

    def __init__(
        self,
        output_dir: str | Path | None = None,
        *,
        model_name: str | None = None,
        base_model: str | None = None,
        dataset_name: str | None = None,
        hub_dataset: str | None = None,
        license: str | None = None,
        language: str | list[str] | None = None,
        tags: list[str] | tuple[str, ...] = (),
        description: str | None = None,
        intended_uses: str | None = None,
        limitations: str | None = None,
        citation: str | None = None,
        task: str | None = None,
        max_length: int | None = None,
        template: str | Path | None = None,
        plots: bool = True,
    ) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.card = {k: v for k, v in {
            "model_name": model_name, "base_model": base_model, "license": license, "language": language,
            "tags": list(tags), "description": description, "intended_uses": intended_uses,
            "limitations": limitations, "citation": citation,
        }.items() if v not in (None, [])}
        self.dataset_name = dataset_name
        self.hub_dataset = hub_dataset
        self.task = task
        self.max_length = max_length
        self.template = template
        self.plots = plots
        self.record: RunRecord | None = None  # the last record written (for scripts that want the numbers)
        self._train_eval_dataset: Any = None
        self._train_ended = False
        self._started: str = ""
        self._written: dict[Path, str] = {}  # card path -> the text this callback last wrote there

    # ------------------------------------------------------------------------------------------- Trainer events
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._train_ended = False
        self._started = _now()

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    eval_dataloader: Any = None, **kwargs: Any) -> None:
        dataset = getattr(eval_dataloader, "dataset", None)
        if not self._train_ended:
            self._train_eval_dataset = dataset
            return
        # An evaluation after training (e.g. a held-out test split): the card reports it.
        if self.record is None or not metrics or not state.is_world_process_zero:
            return
        prefix = next((k[: -len("_runtime")] for k in metrics if k.endswith("_runtime")), "eval")
        if prefix == "eval":
            split = "validation" if _same_dataset(dataset, self._train_eval_dataset) else "evaluation"
        else:
            split = prefix
        values = {k[len(prefix) + 1:]: float(v) for k, v in metrics.items()
                  if k.startswith(prefix + "_") and isinstance(v, (int, float)) and not isinstance(v, bool)
                  and not k.endswith(_SPEED_KEYS)}
        self.record.evaluation = EvaluationRecord(
            model="fine-tuned", split=split, num_examples=_length(dataset) or 0, metrics=values,
            runtime_s=metrics.get(f"{prefix}_runtime"),
            extra={"used_for_model_selection": split == "validation" and bool(args.load_best_model_at_end)},
        )
        runtime = metrics.get(f"{prefix}_runtime")
        if isinstance(runtime, (int, float)):
            self.record.stage_seconds["evaluate"] = round(float(runtime), 2)
        self._write(self.record, self._out_dir(args))

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, processing_class: Any = None,
                     train_dataloader: Any = None, eval_dataloader: Any = None, **kwargs: Any) -> None:
        self._train_ended = True
        if not state.is_world_process_zero:
            return
        train_ds = getattr(train_dataloader, "dataset", None)
        eval_ds = self._train_eval_dataset if self._train_eval_dataset is not None else \
            getattr(eval_dataloader, "dataset", None)
        record = self.build_record(args, state, model, processing_class, train_ds, eval_ds)
        self.record = record
        self._write(record, self._out_dir(args))

    # ----------------------------------------------------------------------------------------------- the record
    def build_record(self, args: Any, state: Any, model: Any, tokenizer: Any, train_ds: Any,
                     eval_ds: Any) -> RunRecord:
        """The run record of a finished ``Trainer.train()`` from its arguments, state, model and datasets."""
        from cardgen.environment import collect_environment
        from cardgen.models import num_parameters
        from cardgen.tasks.catalog import PIPELINE_TAGS
        from cardgen.version import __version__

        task = self.task or infer_task(model)
        label_names = _label_names(model) if task == "text-classification" else []
        training = training_record(args, state)
        base = self.card.get("base_model") or getattr(getattr(model, "config", None), "_name_or_path", "") or \
            getattr(model, "name_or_path", "") or "unknown"
        out_dir = self._out_dir(args)
        notes = []
        if training.epochs and not args.load_best_model_at_end:
            notes.append("load_best_model_at_end was off: the weights are those of the last step, not of the bold "
                         "(best) row of the training results.")
        record = RunRecord(
            config={
                "task": task,
                "model": {"name_or_path": str(base)},
                "data": {"name": self.dataset_name},
                "card": dict(self.card),
                "output": {"dir": str(out_dir)},
            },
            environment=collect_environment(_device_name(args)),
            model=ModelRecord(
                base_model=str(base), task=task, pipeline_tag=PIPELINE_TAGS.get(task, task),
                architecture=type(model).__name__ if model is not None else "unknown",
                num_parameters=num_parameters(model) if model is not None else 0, notes=notes,
            ),
            data=self._data_record(train_ds, eval_ds, tokenizer, label_names),
            training=training,
            evaluation=_training_evaluation(args, training, eval_ds),
            created_at=self._started or _now(),
            cardgen_version=__version__,
            extras={"source": "CardgenCallback"},
        )
        if training.train_runtime_s:
            record.stage_seconds["train"] = training.train_runtime_s
        return record

    def _data_record(self, train_ds: Any, eval_ds: Any, tokenizer: Any, label_names: list[str]) -> DataRecord:
        from cardgen.data_report import data_report

        limit = getattr(tokenizer, "model_max_length", None)
        max_length = self.max_length or (limit if isinstance(limit, int) and 0 < limit < 1_000_000 else 0)
        splits: dict[str, SplitRecord] = {}
        frames: dict[str, Any] = {}
        for name, ds in (("train", train_ds), ("validation", eval_ds)):
            if ds is None:
                continue
            split, frame = _describe_split(name, ds, label_names, self.max_length)
            splits[name] = split
            if frame is not None:
                frames[name] = frame
        record = DataRecord(
            source=self.dataset_name or "the Trainer's datasets", text_column="", label_column=None,
            label_names=label_names, splits=splits, hub_dataset=self.hub_dataset, max_length=max_length,
        )
        usable = frames and len(frames) == len(splits)
        if usable and all("text" in f or "ids" in f for f in frames.values()):
            column = "text" if all("text" in f for f in frames.values()) else "ids"
            labelled = all("label" in f for f in frames.values())
            record.report = data_report(frames, [column], "label" if labelled else None, label_names or None)
            # Token ids are already normalised as far as the tokenizer normalises (e.g. lower case).
            record.report["basis"] = "text" if column == "text" else "token ids"
            record.report["token_length"] = {k: s.token_length for k, s in splits.items()}
        return record

    # ------------------------------------------------------------------------------------------------- writing
    def _out_dir(self, args: Any) -> Path:
        return self.output_dir if self.output_dir is not None else Path(args.output_dir)

    def _write(self, record: RunRecord, out_dir: Path) -> None:
        from cardgen.card.render import write_card
        from cardgen.record import save_record

        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            if self.plots:
                from cardgen.card.plots import write_plots

                write_plots(record, out_dir)
            save_record(record, out_dir / "run.json")
            card = out_dir / "README.md"
            if card.is_file() and card.read_text(encoding="utf-8") == self._written.get(card):
                card.unlink()  # our own card, unedited since: render afresh (a merge keeps old text outside markers)
            self._written[card] = write_card(record, card, template=self.template)
        except (CardgenError, OSError) as exc:
            # Training already finished: a card that cannot be written must not cost the user the trained model.
            message = exc.one_line() if isinstance(exc, CardgenError) else str(exc)
            logger.warning("cardgen could not write the run record and card to %s: %s", out_dir, message)


# ---------------------------------------------------------------------------------------------------------------
# Helpers (plain functions, so tests and other integrations can use them)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _device_name(args: Any) -> str:
    device = str(getattr(args, "device", "cpu"))
    return "cuda:0" if device == "cuda" else device if device.startswith("cuda") else "cpu"


def infer_task(model: Any) -> str:
    """cardgen's task for a transformers model, from its class name (text-classification when unknown)."""
    name = type(model).__name__ if model is not None else ""
    return next((task for fragment, task in TASK_BY_CLASS if fragment in name), "text-classification")


def _label_names(model: Any) -> list[str]:
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    return [str(id2label[i]) for i in sorted(id2label)]


def _same_dataset(a: Any, b: Any) -> bool:
    """Whether two datasets are the same data (the Trainer rebuilds the dataset it evaluates on each call)."""
    if a is None or b is None:
        return False
    fingerprint = getattr(a, "_fingerprint", None)
    return a is b or (fingerprint is not None and fingerprint == getattr(b, "_fingerprint", None))


def _length(dataset: Any) -> int | None:
    try:
        return len(dataset)
    except TypeError:  # an iterable dataset
        return None


def _training_evaluation(args: Any, training: TrainingRecord, eval_ds: Any) -> EvaluationRecord | None:
    """The evaluation results of the weights the Trainer ends with: the best row when it loads the best
    checkpoint at the end, else the last row. They are on the split that picked the best epoch: marked so."""
    if not training.epochs:
        return None
    row = training.epochs[-1]
    if args.load_best_model_at_end and training.best_step is not None:
        row = next((r for r in training.epochs if r.step == training.best_step), row)
    metrics = dict(row.metrics)
    if row.validation_loss is not None:
        metrics["loss"] = row.validation_loss
    return EvaluationRecord(
        model="fine-tuned", split="validation", num_examples=_length(eval_ds) or 0, metrics=metrics,
        extra={"used_for_model_selection": bool(args.load_best_model_at_end), "epoch": row.epoch},
    )


def _describe_split(name: str, ds: Any, label_names: list[str], max_length: int | None) -> tuple[SplitRecord, Any]:
    """A SplitRecord of a Trainer dataset and, when its columns allow, a frame of text (or ids) and labels."""
    from cardgen.data import label_distribution, token_length_stats

    n = _length(ds) or 0
    split = SplitRecord(name=name, num_examples=n, source=f"Trainer {'train' if name == 'train' else 'eval'}_dataset",
                        fingerprint=str(getattr(ds, "_fingerprint", "") or ""))
    columns = list(getattr(ds, "column_names", None) or [])
    if not columns or n > MAX_ROWS_SCANNED:
        return split, None
    import pandas as pd

    frame = pd.DataFrame()
    if "input_ids" in columns:
        ids = [list(x) for x in ds["input_ids"]]
        lengths = [len(x) for x in ids]
        split.token_length = token_length_stats(lengths)
        if max_length:
            split.num_truncated = sum(n_tok >= max_length for n_tok in lengths)  # at the limit: cut, or exactly it
        frame["ids"] = [" ".join(map(str, x)) for x in ids]
    text = next((c for c in TEXT_COLUMNS if c in columns), None)
    if text is not None:
        frame["text"] = [str(t) for t in ds[text]]
    label_col = next((c for c in ("labels", "label") if c in columns), None)
    if label_col is not None:
        labels = list(ds[label_col])
        if labels and all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
            frame["label"] = labels
            if label_names:
                split.label_distribution = label_distribution(labels, label_names)
    if frame.empty:
        return split, None
    return split, frame
