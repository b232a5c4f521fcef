"""The per-example statistics that cardgen used before issue 17, kept verbatim as the peer of bench_stats.py.

Copied from cardgen/stats/{metrics,intervals,paired}.py and the statistics helpers of cardgen/compare.py at commit
ebd85a3: every bootstrap resample gathers (B, n) index matrices, every permutation swaps per example.
``full_comparison`` is what ``classification_comparison`` computed with them (no model, no record).
"""

# ruff: noqa: E501

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


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


def batched_accuracy(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Accuracy of each row: arrays of shape (B, n) -> shape (B,) (1-D input gives shape (1,))."""
    y, p = np.atleast_2d(np.asarray(labels)), np.atleast_2d(np.asarray(predictions))
    return np.mean(y == p, axis=-1)


def batched_f1_macro(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """Macro-F1 of each row over all ``num_labels`` classes, as ``classification_metrics`` computes it.

    Equals scikit-learn's ``f1_score(..., labels=range(num_labels), average="macro", zero_division=0)``: a class
    absent from both gold and predictions counts with F1 0. Use with ``functools.partial(batched_f1_macro,
    num_labels=K)``.
    """
    cm = batched_confusion(labels, predictions, num_labels)
    _, _, f1 = per_class_scores(cm.reshape(-1, num_labels, num_labels))
    return f1.mean(axis=-1)


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


PERMUTATION_METHOD = (
    "paired permutation test (outputs of the two models swapped per example with probability 1/2)"
)
MCNEMAR_METHOD = "exact McNemar test (two-sided binomial test on the discordant pairs)"


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test on paired correctness.

    Attributes:
        b: Examples the base model got right and the fine-tuned model got wrong.
        c: Examples the base model got wrong and the fine-tuned model got right.
        p_value: Two-sided exact p-value (1.0 when there are no discordant pairs).
        test: Name of the test, for the card.
    """

    b: int
    c: int
    p_value: float
    test: str = MCNEMAR_METHOD


@dataclass(frozen=True)
class PairedTestResult:
    """Effect of model B over model A on the same examples, with interval and p-value.

    Unpacks as ``delta, low, high, p_value = result``.

    Attributes:
        delta: ``metric(B) - metric(A)`` on the full data.
        low: Lower end of the paired percentile-bootstrap interval of the delta.
        high: Upper end of that interval.
        p_value: Two-sided p-value of the paired permutation test, ``(1 + #{|perm| >= |delta|}) / (1 + N)``.
        n_resamples: Bootstrap resamples behind ``low`` and ``high``.
        n_permutations: Permutations behind ``p_value``.
        test: Name of the test, for the card.
    """

    delta: float
    low: float
    high: float
    p_value: float
    n_resamples: int
    n_permutations: int
    test: str = PERMUTATION_METHOD

    def __iter__(self) -> Iterator[float]:
        return iter((self.delta, self.low, self.high, self.p_value))


@dataclass(frozen=True)
class Flips:
    """Example indices whose correctness changed from the base to the fine-tuned model.

    Unpacks as ``wrong_to_right, right_to_wrong = flips``.
    """

    wrong_to_right: list[int]
    right_to_wrong: list[int]

    def __iter__(self) -> Iterator[list[int]]:
        return iter((self.wrong_to_right, self.right_to_wrong))


def two_sided_p(null_stats: np.ndarray, observed: float) -> float:
    # Relative tolerance: permuted statistics equal to the observed one up to rounding count as ties, so a
    # model compared with itself (all statistics exactly 0) gets p = 1.
    tol = 1e-12 * max(1.0, abs(observed))
    extreme = int(np.count_nonzero(np.abs(null_stats) >= abs(observed) - tol))
    return min(1.0, (1 + extreme) / (1 + len(null_stats)))


def mcnemar_exact(base_correct: Any, ft_correct: Any) -> McNemarResult:
    """Exact McNemar test: two-sided binomial test (p = 1/2) on the discordant pairs.

    Args:
        base_correct: Per-example booleans, whether the base model was right.
        ft_correct: Per-example booleans, whether the fine-tuned model was right, same order.

    Returns:
        ``McNemarResult(b, c, p_value)`` with ``b`` = base right & fine-tuned wrong, ``c`` = base wrong &
        fine-tuned right; ``p_value`` is 1.0 when ``b + c == 0``.
    """
    from scipy.stats import binomtest

    (a, f), _ = as_arrays(np.asarray(base_correct, dtype=bool), np.asarray(ft_correct, dtype=bool))
    b = int(np.count_nonzero(a & ~f))
    c = int(np.count_nonzero(~a & f))
    if b + c == 0:
        return McNemarResult(b=b, c=c, p_value=1.0)
    p_value = float(binomtest(c, b + c, 0.5, alternative="two-sided").pvalue)
    return McNemarResult(b=b, c=c, p_value=min(1.0, p_value))


def _paired(
    stat: Callable[[tuple[np.ndarray, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...]], np.ndarray],
    shared: list[np.ndarray],
    side_a: list[np.ndarray],
    side_b: list[np.ndarray],
    n: int,
    n_resamples: int,
    n_permutations: int,
    confidence: float,
    seed: int,
) -> PairedTestResult:
    """Paired bootstrap interval and permutation p-value of ``stat(shared, a, b)`` (batched: rows -> (B,))."""
    delta = float(
        np.asarray(
            stat(
                tuple(x[None] for x in shared), tuple(x[None] for x in side_a), tuple(x[None] for x in side_b)
            ),
            dtype=float,
        ).reshape(-1)[0]
    )

    def resampled(idx: np.ndarray) -> np.ndarray:
        return stat(
            tuple(x[idx] for x in shared), tuple(x[idx] for x in side_a), tuple(x[idx] for x in side_b)
        )

    boot = resample_stats(resampled, n, n_resamples, seed)
    low, high = percentiles(boot, confidence)

    # A separate stream for the permutations, so the interval does not depend on n_permutations.
    rng = np.random.default_rng([seed, 1])
    null = []
    for block in blocks(n_permutations, n):
        swap = rng.random((block, n)) < 0.5
        perm_a = tuple(np.where(swap, xb[None], xa[None]) for xa, xb in zip(side_a, side_b, strict=True))
        perm_b = tuple(np.where(swap, xa[None], xb[None]) for xa, xb in zip(side_a, side_b, strict=True))
        shared_rows = tuple(np.broadcast_to(x[None], (block, n)) for x in shared)
        null.append(np.asarray(stat(shared_rows, perm_a, perm_b), dtype=float))
    p_value = two_sided_p(np.concatenate(null), delta)
    return PairedTestResult(
        delta=delta,
        low=low,
        high=high,
        p_value=p_value,
        n_resamples=n_resamples,
        n_permutations=n_permutations,
    )


def paired_bootstrap_test(
    metric_fn: Callable[..., Any],
    labels: Any,
    pred_a: Any,
    pred_b: Any,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    n_permutations: int | None = None,
    vectorized: bool = True,
) -> PairedTestResult:
    """Paired comparison of two models' predictions on the same examples, for any metric (e.g. macro-F1).

    The effect is ``delta = metric(labels, pred_b) - metric(labels, pred_a)``. Its interval is the percentile
    interval of a paired bootstrap (the same resampled examples for both models). The p-value is from a paired
    permutation test: under the null hypothesis that the two models are exchangeable, each example's two
    predictions are swapped with probability 1/2; ``p = (1 + #{|delta_perm| >= |delta|}) / (1 + N)`` (two-sided,
    never 0). A model compared with itself gives delta 0, interval [0, 0] and p = 1.

    Args:
        metric_fn: Batched metric ``(labels, predictions)`` of shape (B, n) -> (B,), e.g. :func:`batched_accuracy`
            or ``functools.partial(batched_f1_macro, num_labels=K)``; a plain one with ``vectorized=False``.
        labels: Gold label ids.
        pred_a: Predictions of model A (the base model).
        pred_b: Predictions of model B (the fine-tuned model).
        n_resamples: Bootstrap resamples for the interval.
        seed: Seed of the bootstrap and the permutations.
        confidence: Coverage of the interval.
        n_permutations: Permutations for the p-value; default ``n_resamples``.
        vectorized: Whether ``metric_fn`` is batched.

    Returns:
        ``PairedTestResult``; unpacks as ``delta, low, high, p_value``.
    """
    check_resampling(n_resamples, confidence)
    n_perm = n_resamples if n_permutations is None else n_permutations
    if n_perm < 1:
        raise ValueError(f"n_permutations must be >= 1 (got {n_perm})")
    (y, a, b), n = as_arrays(labels, pred_a, pred_b)
    fn = batched(metric_fn, vectorized)

    def stat(
        shared: tuple[np.ndarray, ...], sa: tuple[np.ndarray, ...], sb: tuple[np.ndarray, ...]
    ) -> np.ndarray:
        return np.asarray(fn(shared[0], sb[0]), dtype=float) - np.asarray(fn(shared[0], sa[0]), dtype=float)

    return _paired(stat, [y], [a], [b], n, n_resamples, n_perm, confidence, seed)


def _class_metric(kind: str, cls: int, num_labels: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Batched precision/recall/F1 of one class ((B, n) arrays -> (B,)), zero where undefined like sklearn."""
    def fn(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        cm = batched_confusion(np.atleast_2d(labels), np.atleast_2d(predictions), num_labels)
        tp = cm[:, cls, cls].astype(float)
        gold = cm[:, cls, :].sum(axis=-1).astype(float)
        pred = cm[:, :, cls].sum(axis=-1).astype(float)
        denom = {"precision": pred, "recall": gold, "f1": gold + pred}[kind]
        num = 2.0 * tp if kind == "f1" else tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), 0.0)

    return fn


def _macro_metric(kind: str, num_labels: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    parts = [_class_metric(kind, i, num_labels) for i in range(num_labels)]

    def fn(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        return np.mean([p(labels, predictions) for p in parts], axis=0)

    return fn


def _delta_of(metric: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def fn(labels: np.ndarray, base: np.ndarray, ft: np.ndarray) -> np.ndarray:
        return np.asarray(metric(labels, ft), dtype=float) - np.asarray(metric(labels, base), dtype=float)

    return fn


def flips(labels: Any, base_pred: Any, ft_pred: Any) -> Flips:
    """Examples whose correctness changed between the base and the fine-tuned model.

    Args:
        labels: Gold label ids.
        base_pred: Base-model predictions.
        ft_pred: Fine-tuned predictions.

    Returns:
        ``Flips(wrong_to_right, right_to_wrong)``: ascending example indices (plain ints).
    """
    (y, a, b), _ = as_arrays(labels, base_pred, ft_pred)
    base_ok = a == y
    ft_ok = b == y
    return Flips(
        wrong_to_right=np.flatnonzero(~base_ok & ft_ok).tolist(),
        right_to_wrong=np.flatnonzero(base_ok & ~ft_ok).tolist(),
    )


MACRO_KINDS = ("f1", "precision", "recall")
CLASS_KINDS = ("precision", "recall", "f1")


def full_comparison(y: np.ndarray, a: np.ndarray, b: np.ndarray, k: int, n_resamples: int = 1000,
                    confidence: float = 0.95, seed: int = 0, n_permutations: int | None = None) -> dict[str, Any]:
    """The statistics of ``cardgen.compare.classification_comparison`` at ebd85a3: intervals of both models,
    McNemar, the accuracy delta interval, paired permutation tests of the macro metrics, per-class deltas, flips."""
    names = [str(i) for i in range(k)]
    n_perm = n_permutations or n_resamples
    kw: dict[str, Any] = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    out: dict[str, Any] = {"base": classification_intervals(y, a, k, names, **kw),
                           "fine_tuned": classification_intervals(y, b, k, names, **kw),
                           "mcnemar": mcnemar_exact(a == y, b == y),
                           "accuracy": bootstrap_ci(_delta_of(batched_accuracy), y, a, b, **kw)}
    for kind in MACRO_KINDS:
        out[f"{kind}_macro"] = paired_bootstrap_test(_macro_metric(kind, k), y, a, b, n_resamples=n_resamples,
                                                     seed=seed, confidence=confidence, n_permutations=n_perm)
    out["per_class"] = [bootstrap_ci(_delta_of(_class_metric(kind, i, k)), y, a, b, **kw)
                        for i in range(k) for kind in CLASS_KINDS]
    out["flips"] = flips(y, a, b)
    return out
