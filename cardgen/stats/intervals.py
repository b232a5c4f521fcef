"""Seeded percentile-bootstrap confidence intervals over examples and documents."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cardgen.stats.metrics import (
    SumStatistic,
    TableMetric,
    as_arrays,
    infer_num_labels,
    perplexity_from_nll,
    ratio_of_sums,
)
from cardgen.stats.sums import bootstrap_sums
from cardgen.stats.tables import bootstrap_counts, confusions, joint_table, summary

# --------------------------------------------------------------------------------------------------------------
# Confidence intervals and paired significance tests.
#
# Every resampling function here is seeded and vectorised. Two kinds of metric never touch the examples again:
# a ``TableMetric`` (accuracy, precision, recall, F1: functions of the confusion matrix) is resampled from the
# table of cell counts (cardgen.stats.tables: O(resamples x cells), independent of n), and a ``SumStatistic``
# (perplexity, bits per byte, mean scores: functions of per-document sums) with count weights and one matrix
# product per block (cardgen.stats.sums). Any other metric takes the per-example path: resample indices drawn as
# one (B, n) matrix per block, the statistic computed for the whole block at once. Such metric functions are
# "batched": arrays of shape (B, n) (one row per resample) -> shape (B,); pass ``vectorized=False`` to use a plain
# metric (1-D arrays -> float) such as scikit-learn's.
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

    Each resample draws ``n`` example indices with replacement; the same indices select from every array. A
    :class:`~cardgen.stats.metrics.TableMetric` (e.g. :func:`batched_accuracy`) of integer (labels, predictions)
    is resampled from their table of counts instead (the same distribution; O(cells) per resample), a
    :class:`~cardgen.stats.metrics.SumStatistic` with count weights (the same resampled documents as the
    per-example path). Wrap the metric in :func:`~cardgen.stats.metrics.per_example` to force the per-example path.

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
    if isinstance(metric_fn, SumStatistic):
        stats = bootstrap_sums(metric_fn, np.column_stack([a.astype(np.float64) for a in data]), n_resamples, seed)
    elif isinstance(metric_fn, TableMetric) and table_ready(data):
        k = metric_fn.num_labels if metric_fn.num_labels is not None else infer_num_labels(*data)
        table = joint_table([a.astype(np.int64, copy=False) for a in data], k)
        stats = np.concatenate([np.asarray(metric_fn.from_confusion(confusions(table, counts, 1)), dtype=float)
                                for counts in bootstrap_counts(table, n_resamples, seed)])
    else:
        stats = resample_stats(lambda idx: fn(*(a[idx] for a in data)), n, n_resamples, seed)
    return percentile_interval(point, stats, confidence)


def table_ready(data: Sequence[np.ndarray]) -> bool:
    """Whether the arrays are (gold, predictions) ids a table of counts can hold: two integer arrays, ids >= 0."""
    return len(data) == 2 and all(np.issubdtype(a.dtype, np.integer) and int(a.min()) >= 0 for a in data)


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

    All metrics share one set of resamples, drawn as cell counts of the (gold, prediction) table (see
    :mod:`cardgen.stats.tables`): O(resamples x K^2), independent of the number of examples. Point estimates equal
    :func:`classification_metrics` (macro averages over all ``num_labels`` classes, ``zero_division=0``). Two
    separate calls (base, fine-tuned) draw over different tables, so their resamples are not paired: for paired
    intervals of two models and their delta use :func:`cardgen.stats.comparison.classification_comparison_stats`.

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
    table = joint_table([y.astype(np.int64, copy=False), p.astype(np.int64, copy=False)], num_labels)
    point = summary(confusions(table, table.counts[None], 1))[0]
    stats = np.concatenate([summary(confusions(table, c, 1)) for c in bootstrap_counts(table, n_resamples, seed)])
    support = np.bincount(table.cells[:, 0], weights=table.counts, minlength=num_labels).astype(np.int64)
    return intervals_from_summary(point, stats, names, support, confidence, n_resamples, seed)


def intervals_from_summary(point: np.ndarray, stats: np.ndarray, names: Sequence[str], support: np.ndarray,
                           confidence: float, n_resamples: int, seed: int) -> ClassificationIntervals:
    """A :class:`ClassificationIntervals` from the (4 + 3K,) point summary and its (B, 4 + 3K) resamples."""
    ivs = [percentile_interval(point[j], stats[:, j], confidence) for j in range(stats.shape[1])]
    k = len(names)
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
        num_examples=int(support.sum()),
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        method=BOOTSTRAP_METHOD,
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
