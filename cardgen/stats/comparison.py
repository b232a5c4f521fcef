"""Every statistic of a base versus fine-tuned classification comparison, from one (gold, base, fine-tuned) table.

One joint table of counts (K^3 cells at most) gives, from one set of bootstrap draws, the intervals of both models
and of their deltas (so base, fine-tuned and delta are paired: the same resampled examples), and from one set of
permutation draws the p-values of every metric; the exact McNemar test reads its discordant counts off the same
table. Cost O((resamples + permutations) x K^3), independent of the number of examples once the table is built
(one pass over the examples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cardgen.stats import DEFAULT_PERMUTATIONS
from cardgen.stats.intervals import (
    ClassificationIntervals,
    check_resampling,
    intervals_from_summary,
    percentiles,
)
from cardgen.stats.metrics import as_arrays
from cardgen.stats.paired import McNemarResult, PairedTestResult, mcnemar_from_counts, two_sided_p
from cardgen.stats.tables import (
    JointTable,
    bootstrap_counts,
    confusions,
    joint_table,
    permuted_counts,
    summary,
)

MACRO_KEYS = ("accuracy", "f1_macro", "precision_macro", "recall_macro")
CLASS_KEYS = ("precision", "recall", "f1")
COUNT_METHOD = "percentile bootstrap over examples, drawn as multinomial counts of the (gold, base, fine-tuned) table"


@dataclass(frozen=True)
class ClassificationComparisonStats:
    """Intervals of both models, paired deltas with permutation p-values, and McNemar, from one table.

    Attributes:
        base: The base model's metrics with intervals.
        fine_tuned: The fine-tuned model's, from the same resampled examples.
        deltas: ``"accuracy"``, ``"f1_macro"``, ``"precision_macro"``, ``"recall_macro"`` -> fine-tuned minus base,
            with its paired interval and permutation p-value.
        per_class_deltas: Class name -> ``"precision"``, ``"recall"``, ``"f1"`` -> the same for that class.
        mcnemar: Exact McNemar test of paired correctness.
        num_examples: Examples compared.
        n_resamples: Bootstrap resamples.
        n_permutations: Permutations behind every permutation p-value.
        confidence: Coverage of the intervals.
        seed: Seed of the bootstrap (stream ``[seed, 2]``) and the permutations (stream ``[seed, 1]``).
        method: How the intervals were drawn.
    """

    base: ClassificationIntervals
    fine_tuned: ClassificationIntervals
    deltas: dict[str, PairedTestResult]
    per_class_deltas: dict[str, dict[str, PairedTestResult]]
    mcnemar: McNemarResult
    num_examples: int
    n_resamples: int
    n_permutations: int
    confidence: float
    seed: int
    method: str = COUNT_METHOD


def _summaries(table: JointTable, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 4 + 3K) summaries of base and fine-tuned for cell counts (B, C)."""
    return summary(confusions(table, counts, 1)), summary(confusions(table, counts, 2))


def _deltas(table: JointTable, counts: np.ndarray) -> np.ndarray:
    """(B, 4 + 3K) fine-tuned minus base."""
    base, ft = _summaries(table, counts)
    return ft - base


def _mcnemar(table: JointTable) -> McNemarResult:
    gold, base, ft = table.cells[:, 0], table.cells[:, 1], table.cells[:, 2]
    b = int(table.counts[(base == gold) & (ft != gold)].sum())
    c = int(table.counts[(base != gold) & (ft == gold)].sum())
    return mcnemar_from_counts(b, c)


def classification_comparison_stats(
    labels: Any,
    base_predictions: Any,
    ft_predictions: Any,
    num_labels: int,
    label_names: Sequence[str] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    n_permutations: int = DEFAULT_PERMUTATIONS,
) -> ClassificationComparisonStats:
    """Base and fine-tuned intervals, paired deltas, permutation p-values and McNemar from one table of counts.

    The bootstrap draws ``Multinomial(n, counts / n)`` over the (gold, base, fine-tuned) cells: the same
    distribution as resampling examples, and base, fine-tuned and delta share every draw. The permutation test
    swaps each example's two predictions with probability 1/2, drawn as ``Binomial(count, 1/2)`` per discordant
    cell; ``p = (1 + #{|delta_perm| >= |delta|}) / (1 + N)``. A model compared with itself gives delta 0,
    interval [0, 0] and p = 1 everywhere.

    Args:
        labels: Gold label ids in ``[0, num_labels)``.
        base_predictions: The base model's ids, same order.
        ft_predictions: The fine-tuned model's ids, same order.
        num_labels: Number of classes K (absent classes count in the macro averages, as in scikit-learn).
        label_names: Class names (keys of ``per_class``); default ``"0"``, ``"1"``, ...
        n_resamples: Bootstrap resamples.
        confidence: Coverage of the intervals.
        seed: Seed of the bootstrap and the permutations.
        n_permutations: Permutations (default :data:`cardgen.stats.DEFAULT_PERMUTATIONS`).

    Returns:
        A :class:`ClassificationComparisonStats`; ``dataclasses.asdict`` gives its JSON form.

    Raises:
        ValueError: On mismatched lengths, ids outside ``[0, num_labels)``, a wrong number of label names, or
            settings out of range.
    """
    check_resampling(n_resamples, confidence)
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1 (got {n_permutations})")
    (y, a, b), n = as_arrays(labels, base_predictions, ft_predictions)
    names = [str(i) for i in range(num_labels)] if label_names is None else [str(x) for x in label_names]
    if len(names) != num_labels:
        raise ValueError(f"got {len(names)} label names for {num_labels} labels")
    table = joint_table([x.astype(np.int64, copy=False) for x in (y, a, b)], num_labels, mirrors=True)
    point_a, point_b = (s[0] for s in _summaries(table, table.counts[None]))
    boot_a, boot_b = (np.concatenate(parts) for parts in
                      zip(*(_summaries(table, c) for c in bootstrap_counts(table, n_resamples, seed)), strict=True))
    null = np.concatenate([_deltas(table, c) for c in permuted_counts(table, n_permutations, seed)])
    support = np.bincount(table.cells[:, 0], weights=table.counts, minlength=num_labels).astype(np.int64)
    base = intervals_from_summary(point_a, boot_a, names, support, confidence, n_resamples, seed)
    fine_tuned = intervals_from_summary(point_b, boot_b, names, support, confidence, n_resamples, seed)

    def test(j: int) -> PairedTestResult:
        delta = float(point_b[j] - point_a[j])
        low, high = percentiles(boot_b[:, j] - boot_a[:, j], confidence)
        return PairedTestResult(delta=delta, low=low, high=high, p_value=two_sided_p(null[:, j], delta),
                                n_resamples=n_resamples, n_permutations=n_permutations)

    k = num_labels
    return ClassificationComparisonStats(
        base=base, fine_tuned=fine_tuned, deltas={key: test(j) for j, key in enumerate(MACRO_KEYS)},
        per_class_deltas={name: {kind: test(4 + m * k + i) for m, kind in enumerate(CLASS_KEYS)}
                          for i, name in enumerate(names)},
        mcnemar=_mcnemar(table), num_examples=n, n_resamples=n_resamples, n_permutations=n_permutations,
        confidence=confidence, seed=seed,
    )
