"""Seeded percentile-bootstrap confidence intervals over examples and documents."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cardgen.stats.metrics import (
    as_arrays,
    batched_confusion,
    per_class_scores,
    perplexity_from_nll,
    ratio_of_sums,
)

# --------------------------------------------------------------------------------------------------------------
# Confidence intervals and paired significance tests.
#
# Every resampling function here is seeded and vectorised: resample indices are drawn as one (B, n) matrix per
# block and the statistic is computed for the whole block at once, so 1,000 resamples of a few thousand examples
# take milliseconds. Metric functions handed to these functions are "batched": they take arrays of shape (B, n)
# (one row per resample) and return shape (B,). ``batched_accuracy`` and ``batched_f1_macro`` are such
# functions; pass ``vectorized=False`` to use a plain metric (1-D arrays -> float) such as scikit-learn's.
# --------------------------------------------------------------------------------------------------------------

# Upper bound on the elements of one (block, n) index matrix, so memory stays bounded for large evaluation sets.
_BLOCK_ELEMENTS = 4_000_000

BOOTSTRAP_METHOD = "percentile bootstrap over examples"

BatchedMetric = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval.

    Unpacks as ``point, low, high = interval``; ``dataclasses.asdict`` gives a JSON-ready dict.
    """

    point: float
    low: float
    high: float

    def __iter__(self) -> Iterator[float]:
        return iter((self.point, self.low, self.high))


@dataclass(frozen=True)
class ClassIntervals:
    """Per-class precision, recall and F1 with intervals; ``support`` is the number of gold examples."""

    precision: Interval
    recall: Interval
    f1: Interval
    support: int


@dataclass(frozen=True)
class ClassificationIntervals:
    """Classification metrics with bootstrap confidence intervals (see :func:`classification_intervals`)."""

    accuracy: Interval
    f1_macro: Interval
    precision_macro: Interval
    recall_macro: Interval
    per_class: dict[str, ClassIntervals]
    num_examples: int
    confidence: float
    n_resamples: int
    seed: int
    method: str = BOOTSTRAP_METHOD


def check_resampling(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1 (got {n_resamples})")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1) (got {confidence})")


def blocks(total: int, n: int) -> Iterator[int]:
    """Sizes of the blocks of resamples, each at most ``_BLOCK_ELEMENTS`` indices."""
    size = max(1, _BLOCK_ELEMENTS // max(n, 1))
    done = 0
    while done < total:
        step = min(size, total - done)
        yield step
        done += step


def resample_stats(
    stat: Callable[[np.ndarray], np.ndarray], n: int, n_resamples: int, seed: int
) -> np.ndarray:
    """``stat(idx)`` for seeded bootstrap index matrices ``idx`` of shape (block, n); concatenated, shape (B,).

    The indices depend only on ``(n, n_resamples, seed)``, so two calls with the same seed on data of the same
    size resample the same examples: base and fine-tuned intervals are paired.
    """
    rng = np.random.default_rng(seed)
    parts = [
        np.asarray(stat(rng.integers(0, n, size=(block, n))), dtype=float)
        for block in blocks(n_resamples, n)
    ]
    return np.concatenate(parts)


def percentiles(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def percentile_interval(point: float, stats: np.ndarray, confidence: float) -> Interval:
    low, high = percentiles(stats, confidence)
    return Interval(float(point), low, high)


def batched(metric_fn: Callable[..., Any], vectorized: bool) -> BatchedMetric:
    """``metric_fn`` as a batched metric: a plain one is looped over the rows."""
    if vectorized:
        return metric_fn

    def looped(*arrays: np.ndarray) -> np.ndarray:
        return np.array([float(metric_fn(*(a[i] for a in arrays))) for i in range(arrays[0].shape[0])])

    return looped


def bootstrap_ci(
    metric_fn: Callable[..., Any],
    *arrays: Any,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    vectorized: bool = True,
) -> Interval:
    """Seeded percentile-bootstrap confidence interval of a metric over examples.

    Each resample draws ``n`` example indices with replacement; the same indices select from every array.

    Args:
        metric_fn: Batched metric (arrays of shape (B, n) -> shape (B,)), e.g. :func:`batched_accuracy`; or a
            plain metric (1-D arrays -> float) with ``vectorized=False`` (slower: one call per resample).
        *arrays: Per-example arrays of equal length, e.g. ``labels, predictions``.
        n_resamples: Number of bootstrap resamples.
        confidence: Coverage of the interval, e.g. 0.95.
        seed: Seed of the resampling; the same seed resamples the same indices for data of the same size.
        vectorized: Whether ``metric_fn`` is batched.

    Returns:
        ``Interval(point, low, high)``: the metric on all examples and the percentile interval.

    Raises:
        ValueError: If the arrays are empty or differ in length, or the settings are out of range.
    """
    check_resampling(n_resamples, confidence)
    data, n = as_arrays(*arrays)
    fn = batched(metric_fn, vectorized)
    point = float(np.asarray(fn(*(a[None, :] for a in data)), dtype=float).reshape(-1)[0])
    stats = resample_stats(lambda idx: fn(*(a[idx] for a in data)), n, n_resamples, seed)
    return percentile_interval(point, stats, confidence)


def classification_intervals(
    labels: Any,
    predictions: Any,
    num_labels: int,
    label_names: Sequence[str] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ClassificationIntervals:
    """Accuracy, macro and per-class precision/recall/F1 with percentile-bootstrap intervals.

    All metrics share one set of resamples (one confusion matrix per resample). Point estimates equal
    :func:`classification_metrics` (macro averages over all ``num_labels`` classes, ``zero_division=0``).
    Calling this for two models on the same examples with the same seed resamples the same examples for both.

    Args:
        labels: Gold label ids.
        predictions: Predicted label ids, in the same order.
        num_labels: Number of classes.
        label_names: Class names, keys of ``per_class``; default ``"0"``, ``"1"``, ...
        n_resamples: Number of bootstrap resamples.
        confidence: Coverage of the intervals.
        seed: Seed of the resampling.

    Returns:
        A :class:`ClassificationIntervals`; ``dataclasses.asdict`` gives its JSON form.

    Raises:
        ValueError: On mismatched lengths, out-of-range ids or a wrong number of label names.
    """
    check_resampling(n_resamples, confidence)
    (y, p), n = as_arrays(labels, predictions)
    names = [str(i) for i in range(num_labels)] if label_names is None else [str(x) for x in label_names]
    if len(names) != num_labels:
        raise ValueError(f"got {len(names)} label names for {num_labels} labels")
    y = y.astype(np.int64)
    p = p.astype(np.int64)

    def summary(cm: np.ndarray) -> np.ndarray:
        """(B, K, K) -> (B, 4 + 3K): accuracy, f1/precision/recall macro, per-class precision, recall, F1."""
        prec, rec, f1 = per_class_scores(cm)
        acc = np.trace(cm, axis1=-2, axis2=-1) / cm.sum(axis=(-2, -1))
        return np.column_stack([acc, f1.mean(-1), prec.mean(-1), rec.mean(-1), prec, rec, f1])

    point = summary(batched_confusion(y[None], p[None], num_labels))[0]
    rng = np.random.default_rng(seed)
    parts = []
    for block in blocks(n_resamples, n):
        idx = rng.integers(0, n, size=(block, n))
        parts.append(summary(batched_confusion(y[idx], p[idx], num_labels)))
    stats = np.concatenate(parts)
    ivs = [percentile_interval(point[j], stats[:, j], confidence) for j in range(stats.shape[1])]
    k = num_labels
    support = np.bincount(y, minlength=k)
    per_class = {
        names[i]: ClassIntervals(
            precision=ivs[4 + i], recall=ivs[4 + k + i], f1=ivs[4 + 2 * k + i], support=int(support[i])
        )
        for i in range(k)
    }
    return ClassificationIntervals(
        accuracy=ivs[0],
        f1_macro=ivs[1],
        precision_macro=ivs[2],
        recall_macro=ivs[3],
        per_class=per_class,
        num_examples=n,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )


_batched_perplexity = ratio_of_sums(np.exp)


def perplexity_bootstrap(
    nll_per_doc: Any,
    tokens_per_doc: Any,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Token-weighted perplexity with a percentile-bootstrap interval over documents.

    Each resample draws documents with replacement and recomputes ``exp(sum NLL / sum tokens)`` of the draw.

    Args:
        nll_per_doc: Summed NLL (nats) of each document.
        tokens_per_doc: Predicted tokens of each document.
        n_resamples: Bootstrap resamples.
        confidence: Coverage of the interval.
        seed: Seed of the resampling.

    Returns:
        ``Interval(point, low, high)`` of the perplexity.
    """
    perplexity_from_nll(nll_per_doc, tokens_per_doc)  # validates
    nll = np.asarray(nll_per_doc, dtype=float)
    tok = np.asarray(tokens_per_doc, dtype=float)
    return bootstrap_ci(
        _batched_perplexity, nll, tok, n_resamples=n_resamples, confidence=confidence, seed=seed
    )
