"""Text classification: AutoModelForSequenceClassification, accuracy/F1/precision/recall with scikit-learn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cardgen.config import RunConfig
from cardgen.console import Progress
from cardgen.data import (
    PreparedData,
    check_texts,
    label_distribution,
    load_frames,
    make_split_record,
    new_data_record,
    require_columns,
    split_and_subsample,
    token_length_stats,
)
from cardgen.data_report import data_report
from cardgen.errors import DataError
from cardgen.models import LoadedModel, load_pretrained
from cardgen.record import EvaluationRecord
from cardgen.stats.metrics import classification_metrics

if TYPE_CHECKING:
    import pandas as pd

NAME = "text-classification"
PIPELINE_TAG = "text-classification"
DEFAULT_METRIC = "accuracy"
GREATER_IS_BETTER = True


def _is_default_labels(names: list[str]) -> bool:
    return all(n == f"LABEL_{i}" for i, n in enumerate(names))


def model_label_names(model_config: Any) -> list[str] | None:
    """A classifier checkpoint's own label names (None when it has only LABEL_0 ... placeholders)."""
    id2label = getattr(model_config, "id2label", None) or {}
    names = [id2label[i] for i in sorted(id2label)]
    if not names or _is_default_labels(names) or getattr(model_config, "architectures", None) and not any(
        "SequenceClassification" in a for a in model_config.architectures or []
    ):
        return None
    return [str(n) for n in names]


def _label_names(cfg: RunConfig, frames: dict[str, pd.DataFrame], model_names: list[str] | None) -> list[str]:
    if cfg.data.label_names:
        return list(cfg.data.label_names)
    values = [v for f in frames.values() for v in f["label"].tolist()]
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        if model_names and max(values) < len(model_names):
            return model_names
        return [str(i) for i in range(int(max(values)) + 1)]
    strings = sorted({str(v) for v in values})
    if model_names and set(strings) <= set(model_names):
        return model_names
    return strings


def _check_missing_labels(frame: pd.DataFrame, split: str, source: str, column: str) -> None:
    """Blank, null or NaN labels are an error naming the rows, with or without data.label_names: without names
    they would otherwise become classes of their own ('', 'nan')."""
    from pandas import isna

    def missing(value: Any) -> bool:
        if isinstance(value, str):
            return not value.strip()
        return value is None or np.ndim(value) == 0 and bool(isna(value))

    bad = [row + 1 for row, value in enumerate(frame["label"].tolist()) if missing(value)]
    if bad:
        rows = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
        raise DataError(f"{len(bad)} missing (blank or null) label(s) in column {column!r} of the {split} data "
                        f"({source}), rows {rows}", "give every row a label, or remove those rows")


def _encode_labels(frame: pd.DataFrame, names: list[str], split: str, source: str) -> pd.DataFrame:
    index = {n: i for i, n in enumerate(names)}
    ids, bad = [], []
    for row, value in enumerate(frame["label"].tolist()):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            ok = 0 <= int(value) < len(names)
            ids.append(int(value) if ok else -1)
        else:
            key = str(value).strip()
            if key not in index and key.lstrip("-").isdigit() and 0 <= int(key) < len(names):
                ids.append(int(key))
                continue
            ok = key in index
            ids.append(index.get(key, -1))
        if not ok:
            bad.append((row + 1, value))
    if bad:
        shown = ", ".join(f"{v!r} (row {r})" for r, v in bad[:3])
        raise DataError(
            f"{len(bad)} label(s) in the {split} data ({source}) are not among the label names "
            f"[{', '.join(names)}]: {shown}",
            "fix those rows or list every label in data.label_names",
        )
    out = frame.copy()
    out["label"] = ids
    return out


def prepare_data(cfg: RunConfig, tokenizer: Any, need_train: bool, model_config: Any = None) -> PreparedData:
    """Load, check, split and describe the data for classification."""
    d = cfg.data
    frames, sources, files = load_frames(d)
    for split, frame in frames.items():
        cols = [d.text_column, d.label_column] + ([d.text_pair_column] if d.text_pair_column else [])
        require_columns(frame, cols, split, sources[split])
        check_texts(frame, d.text_column, split, sources[split])
        if d.text_pair_column:
            check_texts(frame, d.text_pair_column, split, sources[split])
        rename = {d.text_column: "text", d.label_column: "label"}
        if d.text_pair_column:
            rename[d.text_pair_column] = "text_pair"
        keep = list(rename)
        frames[split] = frame[keep].rename(columns=rename).reset_index(drop=True)
    for split, frame in frames.items():
        _check_missing_labels(frame, split, sources[split], d.label_column)
    names = _label_names(cfg, frames, model_label_names(model_config))
    if len(names) < 2:
        raise DataError(f"only one class ({names[0]!r}) in the data", "classification needs at least two labels")
    for split in list(frames):
        frames[split] = _encode_labels(frames[split], names, split, sources[split])
    frames = split_and_subsample(frames, sources, d, "label", need_train)
    if need_train and "train" in frames and frames["train"]["label"].nunique() < 2:
        raise DataError("the train split holds a single class", "training needs examples of at least two labels")
    max_len = effective_max_length(cfg, tokenizer)
    records = {}
    for split, frame in frames.items():
        lengths = _token_lengths(frame, tokenizer)
        records[split] = make_split_record(
            split, frame, sources[split],
            label_distribution=label_distribution(frame["label"].tolist(), names),
            num_truncated=int(sum(n > max_len for n in lengths)),
            token_length=token_length_stats(lengths),
        )
    record = new_data_record(d, names, records, files, d.label_column)
    record.max_length = max_len
    record.report = data_report(frames, ["text", "text_pair"] if d.text_pair_column else ["text"], "label", names)
    record.report["token_length"] = {split: rec.token_length for split, rec in records.items()}
    record.report["truncated"] = {split: rec.num_truncated for split, rec in records.items()}
    return PreparedData(frames=frames, label_names=names, record=record)


def effective_max_length(cfg: RunConfig, tokenizer: Any) -> int:
    """The configured max length, capped by what the tokenizer's model accepts."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return min(cfg.data.max_length, limit)
    return cfg.data.max_length


def _texts(frame: pd.DataFrame) -> tuple[list[str], list[str] | None]:
    pair = frame["text_pair"].tolist() if "text_pair" in frame else None
    return frame["text"].tolist(), pair


def _token_lengths(frame: pd.DataFrame, tokenizer: Any) -> list[int]:
    texts, pair = _texts(frame)
    enc = tokenizer(texts, pair, truncation=False, add_special_tokens=True)
    return [len(ids) for ids in enc["input_ids"]]


def encode(frame: pd.DataFrame, tokenizer: Any, cfg: RunConfig) -> list[dict[str, list[int]]]:
    """Token ids per example, truncated to the max length, unpadded."""
    texts, pair = _texts(frame)
    enc = tokenizer(texts, pair, truncation=True, max_length=effective_max_length(cfg, tokenizer))
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [{k: enc[k][i] for k in keys} for i in range(len(texts))]


def load_model(cfg: RunConfig, label_names: list[str] | None = None, model_cfg: Any = None,
               tokenizer: Any = None) -> LoadedModel:
    """The checkpoint with a classification head sized for ``label_names``."""
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {}
    if label_names:
        kwargs = {
            "num_labels": len(label_names),
            "id2label": dict(enumerate(label_names)),
            "label2id": {n: i for i, n in enumerate(label_names)},
            "ignore_mismatched_sizes": True,
        }
    loaded = load_pretrained(AutoModelForSequenceClassification, model_cfg or cfg.model, tokenizer=tokenizer,
                             **kwargs)
    # The head's loss is a per-example mean that ignores the Trainer's ``num_items_in_batch``. Left at the default
    # (forward takes **kwargs), the Trainer would multiply that mean by the number of processes under DDP and
    # skip dividing by gradient_accumulation_steps: doubled losses and gradients on 2 devices.
    loaded.model.accepts_loss_kwargs = False
    return loaded


def train_dataset(frame: pd.DataFrame, tokenizer: Any, cfg: RunConfig, split: str) -> Any:
    """A datasets.Dataset of token ids and labels for the Trainer."""
    import datasets

    rows = encode(frame, tokenizer, cfg)
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    columns["labels"] = frame["label"].tolist()
    return datasets.Dataset.from_dict(columns)


def collator(tokenizer: Any, cfg: RunConfig) -> Any:
    """Dynamic padding to the longest example of each batch."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer)


def trainer_metrics(cfg: RunConfig, label_names: list[str]) -> Any:
    """``compute_metrics`` for the Trainer's per-epoch evaluation."""

    def compute(eval_pred: Any) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        return classification_metrics(eval_pred.label_ids, np.argmax(logits, axis=-1), len(label_names))

    return compute


def _step(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    import torch.nn.functional as F

    labels = batch.pop("labels")
    logits = model(**batch).logits
    loss = F.cross_entropy(logits.float(), labels, reduction="none")
    return {"logits": logits, "loss": loss}


def evaluate(loaded: LoadedModel, frame: pd.DataFrame, cfg: RunConfig, label_names: list[str], name: str,
             split: str, progress: Progress | None = None) -> EvaluationRecord:
    """Predictions and metrics of ``loaded`` on ``frame``, with per-example outputs kept."""
    from cardgen.engine import run_engine

    features = encode(frame, loaded.tokenizer, cfg)
    labels = frame["label"].tolist()
    result = run_engine(
        loaded.model, features, _step, batch_size=cfg.evaluation.batch_size,
        pad_token_id=loaded.tokenizer.pad_token_id or 0, extra={"labels": labels}, progress=progress,
        description=f"Evaluating {name} on {split}",
    )
    preds = result.outputs["logits"].argmax(axis=-1).tolist()
    losses = result.outputs["loss"].tolist()
    metrics = classification_metrics(labels, preds, len(label_names))
    metrics["loss"] = float(np.mean(losses))
    return EvaluationRecord(
        model=name, split=split, num_examples=len(labels), metrics=metrics, labels=labels, predictions=preds,
        losses=[round(x, 6) for x in losses], runtime_s=round(result.seconds, 3),
        extra={"padding_efficiency": round(result.padding_efficiency, 4)},
    )


