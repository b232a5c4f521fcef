"""Point metrics (scikit-learn and numpy; no Hub access) and the metric vocabulary: names, Hub types, direction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Hub ``model-index`` metric types and display names of the metric keys cardgen records.
METRIC_TYPES = {"accuracy": "accuracy", "f1_macro": "f1", "precision_macro": "precision", "recall_macro": "recall",
                "f1_positive": "f1", "perplexity": "perplexity", "exact_match": "exact_match", "f1": "f1",
                "bits_per_byte": "bits_per_byte",
                "bleu": "bleu", "chrf": "chrf", "rouge1": "rouge", "rouge2": "rouge", "rougeL": "rouge",
                "rougeLsum": "rouge"}
METRIC_NAMES = {
    "accuracy": "Accuracy", "f1_macro": "F1 (macro)", "precision_macro": "Precision (macro)",
    "recall_macro": "Recall (macro)", "f1_positive": "F1 (positive class)",
    "precision_positive": "Precision (positive class)", "recall_positive": "Recall (positive class)",
    "loss": "Loss", "perplexity": "Perplexity", "bits_per_byte": "Bits per byte", "exact_match": "Exact match",
    "f1": "F1",
    "bleu": "BLEU", "chrf": "chrF", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L",
    "rougeLsum": "ROUGE-Lsum", "gen_len": "Output length (tokens)",
}
# Metrics where a smaller value is better (everything else: larger is better).
LOWER_IS_BETTER = frozenset({"perplexity", "bits_per_byte", "loss"})


def classification_metrics(
    labels: Sequence[int], predictions: Sequence[int], num_labels: int
) -> dict[str, float]:
    """Accuracy and macro precision/recall/F1; for two classes also the positive-class (label 1) F1.

    Args:
        labels: Gold label ids.
        predictions: Predicted label ids, in the same order.
        num_labels: Number of classes, so a class absent from both lists still counts in the macro average.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    y_true = np.asarray(labels)
    y_pred = np.asarray(predictions)
    all_labels = list(range(num_labels))
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=all_labels, average="macro", zero_division=0
    )
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f),
        "precision_macro": float(p),
        "recall_macro": float(r),
    }
    if num_labels == 2:
        pp, rp, fp, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=[1], average=None, zero_division=0
        )
        out["f1_positive"] = float(fp[0])
        out["precision_positive"] = float(pp[0])
        out["recall_positive"] = float(rp[0])
    return out


def as_arrays(*arrays: Any) -> tuple[list[np.ndarray], int]:
    out = [np.asarray(a) for a in arrays]
    if not out:
        raise ValueError("at least one array is needed")
    n = len(out[0])
    for a in out:
        if a.ndim != 1 or len(a) != n:
            raise ValueError(f"arrays must be 1-D and of equal length (got shapes {[x.shape for x in out]})")
    if n == 0:
        raise ValueError("cannot compute a statistic over zero examples")
    return out, n



def batched_confusion(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """Confusion matrices of a batch of resamples, by one ``np.bincount``.

    Args:
        labels: Gold label ids, shape (B, n) or (n,).
        predictions: Predicted label ids, same shape as ``labels``.
        num_labels: Number of classes K; ids must lie in ``[0, K)``.

    Returns:
        Integer array of shape (B, K, K) (or (K, K) for 1-D input); ``[b, i, j]`` counts gold ``i`` predicted ``j``.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(predictions, dtype=np.int64)
    one = y.ndim == 1
    y, p = np.atleast_2d(y), np.atleast_2d(p)
    y, p = np.broadcast_arrays(y, p)
    if y.size and (min(y.min(), p.min()) < 0 or max(y.max(), p.max()) >= num_labels):
        raise ValueError(f"label ids must lie in [0, {num_labels})")
    batch = y.shape[0]
    k2 = num_labels * num_labels
    codes = np.arange(batch, dtype=np.int64)[:, None] * k2 + y * num_labels + p
    cm = np.bincount(codes.ravel(), minlength=batch * k2).reshape(batch, num_labels, num_labels)
    return cm[0] if one else cm


def per_class_scores(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 from (..., K, K) confusion matrices; 0 where undefined (sklearn's
    ``zero_division=0``)."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(float)
    gold = cm.sum(axis=-1).astype(float)
    pred = cm.sum(axis=-2).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred > 0, tp / pred, 0.0)
        recall = np.where(gold > 0, tp / gold, 0.0)
        denom = gold + pred
        f1 = np.where(denom > 0, 2.0 * tp / denom, 0.0)
    return precision, recall, f1


@dataclass(frozen=True)
class TableMetric:
    """A classification metric that depends only on the confusion matrix, so it can be resampled from counts.

    Called like any batched metric (``(labels, predictions)`` of shape (B, n) -> (B,)); the resampling functions
    (:func:`~cardgen.stats.intervals.bootstrap_ci`, :func:`~cardgen.stats.paired.paired_bootstrap_test`) see the
    type and resample the table of cell counts instead of the examples: cost independent of ``n``.

    Attributes:
        name: What it measures, e.g. ``"accuracy"`` or ``"f1 of class 2"``.
        from_confusion: (B, K, K) confusion matrices -> (B,) values.
        num_labels: K; ``None`` infers it from the largest id seen (fine where absent classes do not matter).
        per_example: The same metric on example arrays, when cheaper than building confusion matrices.
    """

    name: str
    from_confusion: Callable[[np.ndarray], np.ndarray]
    num_labels: int | None = None
    per_example: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    def __call__(self, labels: Any, predictions: Any) -> np.ndarray:
        if self.per_example is not None:
            return self.per_example(labels, predictions)
        y, p = np.atleast_2d(np.asarray(labels)), np.atleast_2d(np.asarray(predictions))
        k = self.num_labels if self.num_labels is not None else infer_num_labels(y, p)
        return np.asarray(self.from_confusion(batched_confusion(y, p, k)), dtype=float)


def infer_num_labels(*arrays: np.ndarray) -> int:
    """One more than the largest id in the arrays (at least 1)."""
    return max([1] + [int(np.max(a)) + 1 for a in arrays if np.size(a)])


def accuracy_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Accuracy of (..., K, K) confusion matrices -> (...)."""
    return np.trace(cm, axis1=-2, axis2=-1) / cm.sum(axis=(-2, -1))


def _accuracy_rows(labels: Any, predictions: Any) -> np.ndarray:
    y, p = np.atleast_2d(np.asarray(labels)), np.atleast_2d(np.asarray(predictions))
    return np.mean(y == p, axis=-1)


batched_accuracy = TableMetric("accuracy", accuracy_from_confusion, per_example=_accuracy_rows)
"""Accuracy of each row: arrays of shape (B, n) -> shape (B,) (1-D input gives shape (1,)); a :class:`TableMetric`."""

TABLE_METRIC_KINDS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "precision", "recall", "f1")


def table_metric(kind: str, num_labels: int, cls: int | None = None) -> TableMetric:
    """A :class:`TableMetric` by name: ``accuracy``, ``{f1,precision,recall}_macro``, or per-class
    ``precision``/``recall``/``f1`` of class ``cls`` (0 where undefined, like scikit-learn's ``zero_division=0``).

    Raises:
        ValueError: On an unknown kind, or a per-class kind without a class in ``[0, num_labels)``.
    """
    if kind not in TABLE_METRIC_KINDS:
        raise ValueError(f"unknown metric {kind!r} (choose from {', '.join(TABLE_METRIC_KINDS)})")
    if kind == "accuracy":
        return TableMetric("accuracy", accuracy_from_confusion, num_labels, _accuracy_rows)
    part = ("precision", "recall", "f1").index(kind.split("_")[0])
    if kind.endswith("_macro"):
        return TableMetric(kind, lambda cm: per_class_scores(cm)[part].mean(axis=-1), num_labels)
    if cls is None or not 0 <= cls < num_labels:
        raise ValueError(f"per-class {kind} needs a class in [0, {num_labels}) (got {cls})")
    return TableMetric(f"{kind} of class {cls}", lambda cm: per_class_scores(cm)[part][..., cls], num_labels)


def per_example(metric: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """``metric`` as a plain batched function, so the resampling functions take the per-example path.

    The per-example path draws example indices (the reference the count path is tested against).
    """

    def fn(*arrays: np.ndarray) -> np.ndarray:
        return np.asarray(metric(*arrays), dtype=float)

    return fn


def batched_f1_macro(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """Macro-F1 of each row over all ``num_labels`` classes, as ``classification_metrics`` computes it.

    Equals scikit-learn's ``f1_score(..., labels=range(num_labels), average="macro", zero_division=0)``: a class
    absent from both gold and predictions counts with F1 0. Use with ``functools.partial(batched_f1_macro,
    num_labels=K)``.
    """
    cm = batched_confusion(labels, predictions, num_labels)
    _, _, f1 = per_class_scores(cm.reshape(-1, num_labels, num_labels))
    return f1.mean(axis=-1)


def perplexity_from_nll(nll_sum_per_doc: Any, tokens_per_doc: Any) -> float:
    """Token-weighted perplexity: ``exp(sum of NLL / sum of predicted tokens)`` over all documents.

    This is not the mean of per-document perplexities, which overweights short documents.

    Args:
        nll_sum_per_doc: Summed negative log-likelihood (nats) of each document's predicted tokens.
        tokens_per_doc: Number of predicted tokens of each document.

    Raises:
        ValueError: If the lengths differ or there are no predicted tokens.
    """
    (nll, tok), _ = as_arrays(
        np.asarray(nll_sum_per_doc, dtype=float), np.asarray(tokens_per_doc, dtype=float)
    )
    total = tok.sum()
    if total <= 0:
        raise ValueError("perplexity needs at least one predicted token")
    return float(np.exp(nll.sum() / total))


@dataclass(frozen=True)
class SumStatistic:
    """A corpus statistic that is a function of per-document sums: ``fn(sum over documents of x_i)``.

    ``x_i`` is a vector of per-document sufficient statistics (NLL and tokens for perplexity; matches, totals and
    lengths for corpus BLEU). The resampling functions see the type and resample with count weights: the sums of a
    resample are one matrix product of the counts with the (n, d) per-document matrix.

    Attributes:
        fn: Sums of shape (..., d) -> values of shape (...).
        name: What it measures.
    """

    fn: Callable[[np.ndarray], np.ndarray]
    name: str = "statistic of sums"

    def __call__(self, *arrays: Any) -> np.ndarray:
        """The statistic of each row: ``d`` arrays of shape (B, n) (or (n,), broadcast) -> shape (B,) (or ())."""
        sums = np.broadcast_arrays(*(np.asarray(a, dtype=float).sum(axis=-1) for a in arrays))
        return self.of_sums(np.stack(sums, axis=-1))

    def of_sums(self, sums: np.ndarray) -> np.ndarray:
        """The statistic of sums of shape (..., d)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.asarray(self.fn(sums), dtype=float)


def ratio_of_sums(transform: Callable[[np.ndarray], np.ndarray]) -> SumStatistic:
    """Batched corpus statistic ``transform(sum num / sum den)`` over the last axis (rows of a bootstrap draw).

    Perplexity is ``ratio_of_sums(np.exp)`` of (NLL, tokens); bits per byte divides (NLL / bytes) by ln 2; a mean
    score is the identity of (scores, ones). The result is a :class:`SumStatistic` of two columns.
    """
    return SumStatistic(lambda s: transform(s[..., 0] / s[..., 1]), "ratio of sums")
