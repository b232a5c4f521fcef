"""Paired significance tests: exact McNemar, paired bootstrap + permutation tests, flips."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from cardgen.stats import DEFAULT_PERMUTATIONS
from cardgen.stats.intervals import batched, blocks, check_resampling, percentiles, resample_stats
from cardgen.stats.metrics import (
    SumStatistic,
    TableMetric,
    as_arrays,
    infer_num_labels,
    perplexity_from_nll,
    ratio_of_sums,
)
from cardgen.stats.sums import paired_bootstrap_sums, permuted_deltas
from cardgen.stats.tables import bootstrap_counts, confusions, joint_table, permuted_counts

__all__ = ["DEFAULT_PERMUTATIONS", "McNemarResult", "PairedTestResult", "Flips", "mcnemar_exact",
           "mcnemar_from_counts", "p_value_floor", "paired_bootstrap_test", "paired_ratio_test", "paired_sum_test",
           "perplexity_paired_test", "flips", "two_sided_p"]

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

    @property
    def p_floor(self) -> float:
        """The smallest p-value ``n_permutations`` permutations can give: ``1 / (1 + n_permutations)``."""
        return p_value_floor(self.n_permutations)

    @property
    def at_floor(self) -> bool:
        """Whether ``p_value`` is at its floor: no permutation reached the observed effect, so the true p-value
        is only known to be about ``p_floor`` or smaller (say "< 1/(1+N)", not "= 1/(1+N)")."""
        return p_at_floor(self.p_value, self.n_permutations)


def p_value_floor(n_permutations: int) -> float:
    """The smallest p-value a permutation test with ``n_permutations`` permutations gives: ``1 / (1 + N)``."""
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1 (got {n_permutations})")
    return 1.0 / (1 + n_permutations)


def p_at_floor(p_value: float, n_permutations: int) -> bool:
    """Whether ``p_value`` equals the floor ``1 / (1 + n_permutations)`` (up to rounding)."""
    return p_value <= p_value_floor(n_permutations) * (1 + 1e-9)


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
    (a, f), _ = as_arrays(np.asarray(base_correct, dtype=bool), np.asarray(ft_correct, dtype=bool))
    return mcnemar_from_counts(int(np.count_nonzero(a & ~f)), int(np.count_nonzero(~a & f)))


def mcnemar_from_counts(b: int, c: int) -> McNemarResult:
    """Exact McNemar test from the discordant counts: ``b`` base right & fine-tuned wrong, ``c`` the reverse."""
    from scipy.stats import binomtest

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


def _ids(*arrays: np.ndarray) -> bool:
    return all(np.issubdtype(x.dtype, np.integer) and int(x.min()) >= 0 for x in arrays)


def _table_test(metric: TableMetric, y: np.ndarray, a: np.ndarray, b: np.ndarray, n_resamples: int,
                n_permutations: int, confidence: float, seed: int) -> PairedTestResult:
    """The count path of :func:`paired_bootstrap_test`: bootstrap and permutations drawn as cell counts."""
    k = metric.num_labels if metric.num_labels is not None else infer_num_labels(y, a, b)
    table = joint_table([x.astype(np.int64, copy=False) for x in (y, a, b)], k, mirrors=True)

    def deltas(counts: np.ndarray) -> np.ndarray:
        ft = np.asarray(metric.from_confusion(confusions(table, counts, 2)), dtype=float)
        return ft - np.asarray(metric.from_confusion(confusions(table, counts, 1)), dtype=float)

    delta = float(deltas(table.counts[None])[0])
    boot = np.concatenate([deltas(c) for c in bootstrap_counts(table, n_resamples, seed)])
    null = np.concatenate([deltas(c) for c in permuted_counts(table, n_permutations, seed)])
    low, high = percentiles(boot, confidence)
    return PairedTestResult(delta=delta, low=low, high=high, p_value=two_sided_p(null, delta),
                            n_resamples=n_resamples, n_permutations=n_permutations)


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

    A :class:`~cardgen.stats.metrics.TableMetric` (``batched_accuracy``, :func:`~cardgen.stats.metrics.table_metric`)
    of integer ids is resampled from the (gold, A, B) table of counts (see :mod:`cardgen.stats.tables`): the same
    distributions, O((resamples + permutations) x K^3), independent of ``n``. Any other metric takes the
    per-example path (indices, swaps per example).

    Args:
        metric_fn: Batched metric ``(labels, predictions)`` of shape (B, n) -> (B,), e.g. :func:`batched_accuracy`
            or ``functools.partial(batched_f1_macro, num_labels=K)``; a plain one with ``vectorized=False``.
        labels: Gold label ids.
        pred_a: Predictions of model A (the base model).
        pred_b: Predictions of model B (the fine-tuned model).
        n_resamples: Bootstrap resamples for the interval.
        seed: Seed of the bootstrap and the permutations.
        confidence: Coverage of the interval.
        n_permutations: Permutations for the p-value; default :data:`DEFAULT_PERMUTATIONS` (10,000) on the count
            path, where they cost almost nothing, else ``n_resamples``.
        vectorized: Whether ``metric_fn`` is batched.

    Returns:
        ``PairedTestResult``; unpacks as ``delta, low, high, p_value``.
    """
    check_resampling(n_resamples, confidence)
    (y, a, b), n = as_arrays(labels, pred_a, pred_b)
    counts_path = isinstance(metric_fn, TableMetric) and _ids(y, a, b)
    n_perm = n_permutations if n_permutations is not None else DEFAULT_PERMUTATIONS if counts_path else n_resamples
    if n_perm < 1:
        raise ValueError(f"n_permutations must be >= 1 (got {n_perm})")
    if isinstance(metric_fn, TableMetric) and counts_path:
        return _table_test(metric_fn, y, a, b, n_resamples, n_perm, confidence, seed)
    fn = batched(metric_fn, vectorized)

    def stat(
        shared: tuple[np.ndarray, ...], sa: tuple[np.ndarray, ...], sb: tuple[np.ndarray, ...]
    ) -> np.ndarray:
        return np.asarray(fn(shared[0], sb[0]), dtype=float) - np.asarray(fn(shared[0], sa[0]), dtype=float)

    return _paired(stat, [y], [a], [b], n, n_resamples, n_perm, confidence, seed)


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
        n_permutations: Permutations for the p-value; default :data:`DEFAULT_PERMUTATIONS` (10,000).
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
    (default :data:`DEFAULT_PERMUTATIONS`).

    Returns:
        ``PairedTestResult``; unpacks as ``delta, low, high, p_value``.
    """
    (na, da, nb, db), _ = as_arrays(*(np.asarray(x, dtype=float) for x in (num_a, den_a, num_b, den_b)))
    return paired_sum_test(ratio_of_sums(transform), np.column_stack([na, da]), np.column_stack([nb, db]),
                           n_resamples=n_resamples, seed=seed, confidence=confidence, n_permutations=n_permutations)


def paired_sum_test(
    stat: SumStatistic,
    data_a: Any,
    data_b: Any,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    n_permutations: int | None = None,
) -> PairedTestResult:
    """Paired comparison of a statistic of per-document sums (e.g. corpus BLEU) between two models.

    ``delta = stat(sum of B's rows) - stat(sum of A's rows)``. The interval is a paired bootstrap over documents
    (count weights, one matrix product per block: :mod:`cardgen.stats.sums`); the p-value a paired permutation
    test swapping each document's two rows with probability 1/2. A model compared with itself gives delta 0,
    interval [0, 0] and p = 1.

    Args:
        stat: The statistic of the (d,) column sums, e.g. ``ratio_of_sums(np.exp)`` or a BLEU of its statistics.
        data_a: (n, d) per-document sufficient statistics of model A (the base model).
        data_b: (n, d) of model B on the same documents, same columns.
        n_resamples: Bootstrap resamples for the interval.
        seed: Seed of the bootstrap and the permutations (the same resampled documents as the per-example path).
        confidence: Coverage of the interval.
        n_permutations: Permutations for the p-value; default :data:`DEFAULT_PERMUTATIONS` (10,000).

    Returns:
        ``PairedTestResult``; unpacks as ``delta, low, high, p_value``.

    Raises:
        ValueError: If the shapes differ or are not (n, d) with n >= 1, or the settings are out of range.
    """
    check_resampling(n_resamples, confidence)
    n_perm = DEFAULT_PERMUTATIONS if n_permutations is None else n_permutations
    if n_perm < 1:
        raise ValueError(f"n_permutations must be >= 1 (got {n_perm})")
    xa, xb = np.asarray(data_a, dtype=np.float64), np.asarray(data_b, dtype=np.float64)
    if xa.ndim != 2 or xa.shape != xb.shape or len(xa) == 0:
        raise ValueError(f"data must be two (n, d) arrays of equal shape, n >= 1 (got {xa.shape}, {xb.shape})")
    delta = float(stat.of_sums(xb.sum(axis=0)) - stat.of_sums(xa.sum(axis=0)))
    boot_a, boot_b = paired_bootstrap_sums(stat, xa, xb, n_resamples, seed)
    low, high = percentiles(boot_b - boot_a, confidence)
    p_value = two_sided_p(permuted_deltas(stat, xa, xb, n_perm, seed), delta)
    return PairedTestResult(delta=delta, low=low, high=high, p_value=p_value, n_resamples=n_resamples,
                            n_permutations=n_perm)


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
    (y, a, b), _ = as_arrays(labels, base_pred, ft_pred)
    base_ok = a == y
    ft_ok = b == y
    return Flips(
        wrong_to_right=np.flatnonzero(~base_ok & ft_ok).tolist(),
        right_to_wrong=np.flatnonzero(base_ok & ~ft_ok).tolist(),
    )
