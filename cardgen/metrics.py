"""Metric functions (scikit-learn and numpy; no Hub access), confidence intervals and paired significance tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


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
PERMUTATION_METHOD = (
    "paired permutation test (outputs of the two models swapped per example with probability 1/2)"
)
MCNEMAR_METHOD = "exact McNemar test (two-sided binomial test on the discordant pairs)"

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


@dataclass(frozen=True)
class Flips:
    """Example indices whose correctness changed from the base to the fine-tuned model.

    Unpacks as ``wrong_to_right, right_to_wrong = flips``.
    """

    wrong_to_right: list[int]
    right_to_wrong: list[int]

    def __iter__(self) -> Iterator[list[int]]:
        return iter((self.wrong_to_right, self.right_to_wrong))


# ------------------------------------------------------------------------------------------------ helpers


def _as_arrays(*arrays: Any) -> tuple[list[np.ndarray], int]:
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


def _check_resampling(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1 (got {n_resamples})")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1) (got {confidence})")


def _blocks(total: int, n: int) -> Iterator[int]:
    """Sizes of the blocks of resamples, each at most ``_BLOCK_ELEMENTS`` indices."""
    size = max(1, _BLOCK_ELEMENTS // max(n, 1))
    done = 0
    while done < total:
        step = min(size, total - done)
        yield step
        done += step


def _resample_stats(
    stat: Callable[[np.ndarray], np.ndarray], n: int, n_resamples: int, seed: int
) -> np.ndarray:
    """``stat(idx)`` for seeded bootstrap index matrices ``idx`` of shape (block, n); concatenated, shape (B,).

    The indices depend only on ``(n, n_resamples, seed)``, so two calls with the same seed on data of the same
    size resample the same examples: base and fine-tuned intervals are paired.
    """
    rng = np.random.default_rng(seed)
    parts = [
        np.asarray(stat(rng.integers(0, n, size=(block, n))), dtype=float)
        for block in _blocks(n_resamples, n)
    ]
    return np.concatenate(parts)


def _percentiles(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _interval(point: float, stats: np.ndarray, confidence: float) -> Interval:
    low, high = _percentiles(stats, confidence)
    return Interval(float(point), low, high)


def _batched(metric_fn: Callable[..., Any], vectorized: bool) -> BatchedMetric:
    """``metric_fn`` as a batched metric: a plain one is looped over the rows."""
    if vectorized:
        return metric_fn

    def looped(*arrays: np.ndarray) -> np.ndarray:
        return np.array([float(metric_fn(*(a[i] for a in arrays))) for i in range(arrays[0].shape[0])])

    return looped


def _two_sided_p(null_stats: np.ndarray, observed: float) -> float:
    # Relative tolerance: permuted statistics equal to the observed one up to rounding count as ties, so a
    # model compared with itself (all statistics exactly 0) gets p = 1.
    tol = 1e-12 * max(1.0, abs(observed))
    extreme = int(np.count_nonzero(np.abs(null_stats) >= abs(observed) - tol))
    return min(1.0, (1 + extreme) / (1 + len(null_stats)))


# ------------------------------------------------------------------------------------------------ batched metrics


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


def _per_class(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    _, _, f1 = _per_class(cm.reshape(-1, num_labels, num_labels))
    return f1.mean(axis=-1)


# ------------------------------------------------------------------------------------------------ intervals


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
    _check_resampling(n_resamples, confidence)
    data, n = _as_arrays(*arrays)
    fn = _batched(metric_fn, vectorized)
    point = float(np.asarray(fn(*(a[None, :] for a in data)), dtype=float).reshape(-1)[0])
    stats = _resample_stats(lambda idx: fn(*(a[idx] for a in data)), n, n_resamples, seed)
    return _interval(point, stats, confidence)


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
    _check_resampling(n_resamples, confidence)
    (y, p), n = _as_arrays(labels, predictions)
    names = [str(i) for i in range(num_labels)] if label_names is None else [str(x) for x in label_names]
    if len(names) != num_labels:
        raise ValueError(f"got {len(names)} label names for {num_labels} labels")
    y = y.astype(np.int64)
    p = p.astype(np.int64)

    def summary(cm: np.ndarray) -> np.ndarray:
        """(B, K, K) -> (B, 4 + 3K): accuracy, f1/precision/recall macro, per-class precision, recall, F1."""
        prec, rec, f1 = _per_class(cm)
        acc = np.trace(cm, axis1=-2, axis2=-1) / cm.sum(axis=(-2, -1))
        return np.column_stack([acc, f1.mean(-1), prec.mean(-1), rec.mean(-1), prec, rec, f1])

    point = summary(batched_confusion(y[None], p[None], num_labels))[0]
    rng = np.random.default_rng(seed)
    parts = []
    for block in _blocks(n_resamples, n):
        idx = rng.integers(0, n, size=(block, n))
        parts.append(summary(batched_confusion(y[idx], p[idx], num_labels)))
    stats = np.concatenate(parts)
    ivs = [_interval(point[j], stats[:, j], confidence) for j in range(stats.shape[1])]
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


# ------------------------------------------------------------------------------------------------ paired tests


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

    (a, f), _ = _as_arrays(np.asarray(base_correct, dtype=bool), np.asarray(ft_correct, dtype=bool))
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

    boot = _resample_stats(resampled, n, n_resamples, seed)
    low, high = _percentiles(boot, confidence)

    # A separate stream for the permutations, so the interval does not depend on n_permutations.
    rng = np.random.default_rng([seed, 1])
    null = []
    for block in _blocks(n_permutations, n):
        swap = rng.random((block, n)) < 0.5
        perm_a = tuple(np.where(swap, xb[None], xa[None]) for xa, xb in zip(side_a, side_b, strict=True))
        perm_b = tuple(np.where(swap, xa[None], xb[None]) for xa, xb in zip(side_a, side_b, strict=True))
        shared_rows = tuple(np.broadcast_to(x[None], (block, n)) for x in shared)
        null.append(np.asarray(stat(shared_rows, perm_a, perm_b), dtype=float))
    p_value = _two_sided_p(np.concatenate(null), delta)
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
    _check_resampling(n_resamples, confidence)
    n_perm = n_resamples if n_permutations is None else n_permutations
    if n_perm < 1:
        raise ValueError(f"n_permutations must be >= 1 (got {n_perm})")
    (y, a, b), n = _as_arrays(labels, pred_a, pred_b)
    fn = _batched(metric_fn, vectorized)

    def stat(
        shared: tuple[np.ndarray, ...], sa: tuple[np.ndarray, ...], sb: tuple[np.ndarray, ...]
    ) -> np.ndarray:
        return np.asarray(fn(shared[0], sb[0]), dtype=float) - np.asarray(fn(shared[0], sa[0]), dtype=float)

    return _paired(stat, [y], [a], [b], n, n_resamples, n_perm, confidence, seed)


# ------------------------------------------------------------------------------------------------ perplexity


def perplexity_from_nll(nll_sum_per_doc: Any, tokens_per_doc: Any) -> float:
    """Token-weighted perplexity: ``exp(sum of NLL / sum of predicted tokens)`` over all documents.

    This is not the mean of per-document perplexities, which overweights short documents.

    Args:
        nll_sum_per_doc: Summed negative log-likelihood (nats) of each document's predicted tokens.
        tokens_per_doc: Number of predicted tokens of each document.

    Raises:
        ValueError: If the lengths differ or there are no predicted tokens.
    """
    (nll, tok), _ = _as_arrays(
        np.asarray(nll_sum_per_doc, dtype=float), np.asarray(tokens_per_doc, dtype=float)
    )
    total = tok.sum()
    if total <= 0:
        raise ValueError("perplexity needs at least one predicted token")
    return float(np.exp(nll.sum() / total))


def ratio_of_sums(transform: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Batched corpus statistic ``transform(sum num / sum den)`` over the last axis (rows of a bootstrap draw).

    Perplexity is ``ratio_of_sums(np.exp)`` of (NLL, tokens); bits per byte divides (NLL / bytes) by ln 2; a mean
    score is the identity of (scores, ones).
    """

    def stat(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.asarray(transform(num.sum(axis=-1) / den.sum(axis=-1)), dtype=float)

    return stat


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


def perplexity_paired_test(
    nll_a: Any,
    nll_b: Any,
    tokens_per_doc: Any,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    n_permutations: int | None = None,
    tokens_b: Any | None = None,
) -> PairedTestResult:
    """Paired comparison of two models' token-weighted perplexity on the same documents.

    ``delta = ppl(B) - ppl(A)`` (negative: B is better), each perplexity ``exp(sum NLL / sum tokens)``. The
    interval is a paired bootstrap over documents (the same documents for both models); the p-value is a paired
    permutation test that swaps the two models' per-document (NLL, tokens) with probability 1/2.

    Args:
        nll_a: Summed NLL (nats) per document under model A (the base model).
        nll_b: Summed NLL per document under model B (the fine-tuned model).
        tokens_per_doc: Predicted tokens per document (of model A, and of B unless ``tokens_b`` is given).
        n_resamples: Bootstrap resamples for the interval.
        seed: Seed of the bootstrap and the permutations.
        confidence: Coverage of the interval.
        n_permutations: Permutations for the p-value; default ``n_resamples``.
        tokens_b: Predicted tokens per document of model B, when its tokenizer differs (perplexities of
            different tokenizers are not comparable per token; prefer bits per byte then).

    Returns:
        ``PairedTestResult``; unpacks as ``delta, low, high, p_value``.
    """
    tok_b_in = tokens_per_doc if tokens_b is None else tokens_b
    perplexity_from_nll(nll_a, tokens_per_doc)
    perplexity_from_nll(nll_b, tok_b_in)
    return paired_ratio_test(nll_a, tokens_per_doc, nll_b, tok_b_in, np.exp, n_resamples=n_resamples, seed=seed,
                             confidence=confidence, n_permutations=n_permutations)


def paired_ratio_test(
    num_a: Any,
    den_a: Any,
    num_b: Any,
    den_b: Any,
    transform: Callable[[np.ndarray], np.ndarray] = lambda x: x,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    n_permutations: int | None = None,
) -> PairedTestResult:
    """Paired comparison of ``transform(sum num / sum den)`` between two models scored on the same documents.

    Covers every corpus-level metric that is a ratio of per-document sums (see :func:`ratio_of_sums`). ``delta`` is
    B minus A; its interval is a paired bootstrap over documents, its p-value a paired permutation test (each
    document's two (numerator, denominator) pairs swapped with probability 1/2), ``n_permutations`` of them
    (default ``n_resamples``).

    Returns:
        ``PairedTestResult``; unpacks as ``delta, low, high, p_value``.
    """
    _check_resampling(n_resamples, confidence)
    n_perm = n_resamples if n_permutations is None else n_permutations
    if n_perm < 1:
        raise ValueError(f"n_permutations must be >= 1 (got {n_perm})")
    (na, da, nb, db), n = _as_arrays(*(np.asarray(x, dtype=float) for x in (num_a, den_a, num_b, den_b)))
    ratio = ratio_of_sums(transform)

    def stat(_: tuple[np.ndarray, ...], sa: tuple[np.ndarray, ...], sb: tuple[np.ndarray, ...]) -> np.ndarray:
        return ratio(*sb) - ratio(*sa)

    return _paired(stat, [], [na, da], [nb, db], n, n_resamples, n_perm, confidence, seed)


# ------------------------------------------------------------------------------------------------ flips


def flips(labels: Any, base_pred: Any, ft_pred: Any) -> Flips:
    """Examples whose correctness changed between the base and the fine-tuned model.

    Args:
        labels: Gold label ids.
        base_pred: Base-model predictions.
        ft_pred: Fine-tuned predictions.

    Returns:
        ``Flips(wrong_to_right, right_to_wrong)``: ascending example indices (plain ints).
    """
    (y, a, b), _ = _as_arrays(labels, base_pred, ft_pred)
    base_ok = a == y
    ft_ok = b == y
    return Flips(
        wrong_to_right=np.flatnonzero(~base_ok & ft_ok).tolist(),
        right_to_wrong=np.flatnonzero(base_ok & ~ft_ok).tolist(),
    )
