"""The honest base model for a classification comparison: zero-shot or a linear probe.

A base checkpoint without a trained head for the task (transformers reports the head as newly initialised, as for
any encoder fine-tuned into a classifier) is never evaluated with that random head. The baseline is then a linear
probe: a seeded logistic regression on the frozen base model's mean-pooled features of the train split. A base that
already is a classifier with the same label names is evaluated as it is (zero-shot).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cardgen.console import Progress
from cardgen.errors import DataError
from cardgen.record import (
    EvaluationRecord,
    ProbeRecord,
)

if TYPE_CHECKING:
    import pandas as pd

    from cardgen.config import ModelConfig, RunConfig


POOLING = "masked mean of the last hidden state"


PROBE_MAX_ITER = 2000


def is_backbone_only(key: str) -> bool:
    # A pooler that a checkpoint never had is harmless for classifiers that do not use it.
    return ".pooler." in f".{key}"


def base_method(model_config: Any, label_names: Sequence[str], newly_initialized: Sequence[str] = ()) -> str:
    """``"zero-shot"`` when the base already is a classifier with these label names, else ``"linear-probe"``.

    Args:
        model_config: The base checkpoint's transformers config (None when unknown).
        label_names: The task's label names, in id order.
        newly_initialized: Weights transformers initialised fresh when the base was loaded for the task; any
            such weight means the head is random, and a random head is never "the base model".
    """
    from cardgen.tasks.classification import model_label_names

    if any(not is_backbone_only(k) for k in newly_initialized):
        return "linear-probe"
    names = model_label_names(model_config) if model_config is not None else None
    return "zero-shot" if names is not None and names == list(label_names) else "linear-probe"


def zero_shot(cfg: RunConfig, task: Any, tokenizer: Any, frame: pd.DataFrame, label_names: list[str], split: str,
               device: Any, progress: Progress) -> EvaluationRecord | None:
    """The base classifier evaluated as it is; None when its head turns out not to be trained for these labels."""
    base = task.load_model(cfg, label_names, tokenizer=tokenizer)
    if any(not is_backbone_only(k) for k in base.newly_initialized):
        return None
    base.model.to(device)
    evaluation: EvaluationRecord = task.evaluate(base, frame, cfg, label_names, "base", split, progress)
    evaluation.method = "zero-shot"
    return evaluation


def _pool_step(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return {"features": (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)}


def pooled_features(model: Any, tokenizer: Any, frame: pd.DataFrame, cfg: RunConfig, batch_size: int,
                    progress: Progress | None = None, description: str = "Extracting features") -> np.ndarray:
    """Masked mean of the last hidden state per example, via the evaluation engine (sorted batches).

    Inputs are tokenised and truncated exactly as for evaluation (``cfg.data.max_length``).
    """
    from cardgen.engine import run_engine
    from cardgen.tasks.classification import encode

    features = encode(frame, tokenizer, cfg)
    result = run_engine(model, features, _pool_step, batch_size=batch_size,
                        pad_token_id=tokenizer.pad_token_id or 0, progress=progress, description=description)
    return np.asarray(result.outputs["features"], dtype=np.float64)


def linear_probe(model_cfg: ModelConfig, cfg: RunConfig, tokenizer: Any, train_frame: pd.DataFrame | None,
                 eval_frame: pd.DataFrame, label_names: list[str], *, split: str, max_train: int, seed: int,
                 batch_size: int, device: Any = None, progress: Progress | None = None, encoder: Any = None,
                 ) -> tuple[EvaluationRecord, ProbeRecord]:
    """Logistic regression on the frozen base model's pooled features: the honest baseline for a new head.

    Args:
        model_cfg: The base checkpoint.
        cfg: Gives the truncation length (``cfg.data.max_length``).
        tokenizer: The base model's tokenizer.
        train_frame: Examples to fit the probe on (``text``, ``label`` columns); at most ``max_train`` of them, a
            seeded subset.
        eval_frame: The evaluation examples.
        label_names: Class names in id order.
        split: Name of the evaluation split, for the record.
        max_train: Most training examples to use.
        seed: Seed of the subset and of the classifier.
        batch_size: Examples per forward pass.
        device: Where the base model runs (default: where it loads).
        progress: Where to report progress.
        encoder: The base's encoder already in memory (e.g. an adapted model's backbone with the adapter
            disabled); default: ``model_cfg`` is loaded.

    Returns:
        The base model's evaluation (method ``"linear-probe"``, per-example predictions and log-losses) and how
        the probe was fitted.

    Raises:
        DataError: No training examples, or a single class among them.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoModel

    from cardgen.data import subsample
    from cardgen.models import load_pretrained
    from cardgen.stats.metrics import classification_metrics

    if train_frame is None or len(train_frame) == 0:
        raise DataError("the linear-probe baseline needs training examples and there are none",
                        "give training data (data.train, or --train FILE)")
    train_frame = subsample(train_frame, max_train, seed)
    y_train = np.asarray(train_frame["label"].tolist(), dtype=np.int64)
    if len(np.unique(y_train)) < 2:
        raise DataError("the linear-probe baseline needs training examples of at least two labels",
                        "give more varied training data")
    start = time.perf_counter()
    if encoder is None:
        encoder = load_pretrained(AutoModel, model_cfg, tokenizer=tokenizer).model
        if device is not None:
            encoder.to(device)
    x_train = pooled_features(encoder, tokenizer, train_frame, cfg, batch_size, progress,
                              "Base features (probe train)")
    eval_start = time.perf_counter()
    x_eval = pooled_features(encoder, tokenizer, eval_frame, cfg, batch_size, progress,
                             f"Base features ({split})")
    eval_seconds = time.perf_counter() - eval_start
    del encoder
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER, random_state=seed))
    clf.fit(x_train, y_train)
    k = len(label_names)
    proba = np.zeros((len(x_eval), k))
    proba[:, clf.classes_] = clf.predict_proba(x_eval)
    labels = [int(v) for v in eval_frame["label"].tolist()]
    preds = proba.argmax(axis=1).tolist()
    losses = -np.log(np.clip(proba[np.arange(len(labels)), labels], 1e-12, None))
    metrics = classification_metrics(labels, preds, k)
    metrics["loss"] = float(losses.mean())
    evaluation = EvaluationRecord(
        model="base", split=split, num_examples=len(labels), metrics=metrics, labels=labels, predictions=preds,
        losses=[round(float(x), 6) for x in losses], method="linear-probe", runtime_s=round(eval_seconds, 3),
        extra={"probe_train_examples": len(y_train)},
    )
    probe = ProbeRecord(
        features=POOLING, feature_dim=int(x_train.shape[1]),
        classifier=f"StandardScaler + LogisticRegression(C=1.0, lbfgs, max_iter={PROBE_MAX_ITER})",
        train_split="train", num_train=len(y_train),
        train_accuracy=float(np.mean(clf.predict(x_train) == y_train)), seed=seed,
        seconds=round(time.perf_counter() - start, 2),
    )
    return evaluation, probe
