"""Resampling classification results from their table of counts instead of their examples.

Accuracy, precision, recall and F1 of one or two models depend only on the joint table of (gold, prediction[,
second prediction]) over the examples: at most K^2 or K^3 cells, however many examples there are. Two exact
identities turn every resampling of examples into a draw of cell counts:

- Bootstrap: drawing ``n`` examples with replacement puts ``Multinomial(n, counts / n)`` of them in the cells.
- Paired permutation: swapping each example's two predictions with probability 1/2 moves ``Binomial(count, 1/2)``
  examples of each discordant cell (g, a, b), a != b, to its mirror (g, b, a), independently per cell.

So a resample costs O(cells) instead of O(n) and holds O(cells) memory. The draws are seeded and documented, so
a reader can recompute them from the predictions alone: the bootstrap is
``np.random.default_rng([seed, 2]).multinomial(n, counts / n, size=n_resamples)`` over the non-empty cells in
lexicographic order of their tuples (stream 2: these are not the per-example path's ``default_rng(seed)`` index
draws, only the same distribution); permutations use the stream ``default_rng([seed, 1])`` (as the per-example
path) with ``binomial(counts of the discordant cells, 0.5, size=(n_permutations, cells))``, the discordant cells
in the same order. Block sizes never change the draws.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from cardgen.stats.metrics import accuracy_from_confusion, per_class_scores

# Upper bound on the cells (or confusion entries) held for one block of resamples, so memory stays bounded.
_BLOCK_CELLS = 4_000_000


@dataclass(frozen=True)
class JointTable:
    """Counts of the distinct tuples (gold, prediction, ...) of the examples.

    Attributes:
        cells: (C, m) int64, each row one tuple; the non-empty ones first (lexicographic), then the empty mirrors
            that a permutation can fill (for a two-model table).
        counts: (C,) int64 examples per cell.
        num_labels: K; every id lies in ``[0, K)``.
        observed: How many leading cells are non-empty (the ones the bootstrap draws over).
    """

    cells: np.ndarray
    counts: np.ndarray
    num_labels: int
    observed: int

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.counts.sum())


def _codes(arrays: Sequence[np.ndarray], k: int) -> np.ndarray:
    code = np.zeros(len(arrays[0]), dtype=np.int64)
    for a in arrays:
        code *= k
        code += a
    return code


def _decode(codes: np.ndarray, m: int, k: int) -> np.ndarray:
    out = np.empty((len(codes), m), dtype=np.int64)
    rest = codes.copy()
    for j in range(m - 1, -1, -1):
        out[:, j] = rest % k
        rest //= k
    return out


def joint_table(arrays: Sequence[np.ndarray], num_labels: int, mirrors: bool = False) -> JointTable:
    """The joint table of ``m`` equal-length id arrays, in O(n + K^m) time (one ``bincount``, no sort).

    Args:
        arrays: Gold ids and one or two prediction arrays, each 1-D int, ids in ``[0, num_labels)``.
        num_labels: K.
        mirrors: Also list the empty mirror (g, b, a) of every non-empty (g, a, b), for permutations.

    Raises:
        ValueError: On ids outside ``[0, num_labels)``.
    """
    k, m = int(num_labels), len(arrays)
    for a in arrays:
        if a.size and (int(a.min()) < 0 or int(a.max()) >= k):
            raise ValueError(f"label ids must lie in [0, {k})")
    if k**m <= max(4 * len(arrays[0]), 1 << 16):
        dense = np.bincount(_codes(arrays, k), minlength=k**m)
        codes = np.flatnonzero(dense)
        counts = dense[codes]
    else:  # many classes: only the cells that occur (sorted), never a K^m array
        codes, counts = np.unique(_codes(arrays, k), return_counts=True)
    cells = _decode(codes, m, k)
    observed = len(codes)
    if mirrors:
        if m != 3:
            raise ValueError("mirrors need a (gold, a, b) table")
        mirror = cells[:, [0, 2, 1]]
        mirror_codes = _codes([mirror[:, j] for j in range(3)], k)
        extra = np.setdiff1d(mirror_codes, codes)
        cells = np.concatenate([cells, _decode(extra, m, k)])
        counts = np.concatenate([counts, np.zeros(len(extra), dtype=np.int64)])
    return JointTable(cells=cells, counts=counts.astype(np.int64), num_labels=k, observed=observed)


def block_sizes(total: int, per_row: int) -> Iterator[int]:
    """Sizes of blocks of ``total`` rows, each block at most ``_BLOCK_CELLS`` elements of ``per_row``."""
    size = max(1, _BLOCK_CELLS // max(per_row, 1))
    done = 0
    while done < total:
        step = min(size, total - done)
        yield step
        done += step


def _row_width(table: JointTable) -> int:
    return max(len(table.counts), table.num_labels**2)


def bootstrap_counts(table: JointTable, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap cell counts, shape (block, C): each row ``Multinomial(n, counts / n)`` over the
    observed cells (the empty mirrors stay 0), the same draws for any block size."""
    rng = np.random.default_rng([seed, 2])
    n, c_obs = table.n, table.observed
    pvals = table.counts[:c_obs] / n
    for block in block_sizes(n_resamples, _row_width(table)):
        out = np.zeros((block, len(table.counts)), dtype=np.int64)
        out[:, :c_obs] = rng.multinomial(n, pvals, size=block)
        yield out


def permuted_counts(table: JointTable, n_permutations: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of cell counts after swapping each example's two predictions with probability 1/2, (block, C).

    ``table`` is a (gold, a, b) table built with ``mirrors=True``. Each discordant cell keeps ``count - X`` of its
    examples and receives ``X'`` from its mirror, ``X, X' ~ Binomial(count, 1/2)`` independently.
    """
    rng = np.random.default_rng([seed, 1])
    cells, counts = table.cells, table.counts
    k = table.num_labels
    all_codes = _codes([cells[:, j] for j in range(3)], k)
    order = np.argsort(all_codes)
    discordant = np.flatnonzero((cells[:, 1] != cells[:, 2]) & (counts > 0))
    mirror_codes = _codes([cells[discordant, 0], cells[discordant, 2], cells[discordant, 1]], k)
    targets = order[np.searchsorted(all_codes[order], mirror_codes)]
    for block in block_sizes(n_permutations, _row_width(table)):
        out = np.broadcast_to(counts, (block, len(counts))).copy()
        if len(discordant):
            moved = rng.binomial(counts[discordant], 0.5, size=(block, len(discordant)))
            out[:, discordant] -= moved
            out[:, targets] += moved  # the mirror is a bijection: every target appears once
        yield out


def confusions(table: JointTable, counts: np.ndarray, pred_column: int) -> np.ndarray:
    """(B, K, K) confusion matrices (gold x the predictions in ``pred_column`` of the cells) of cell counts (B, C)."""
    k = table.num_labels
    code = table.cells[:, 0] * k + table.cells[:, pred_column]
    b = counts.shape[0]
    flat = (np.arange(b, dtype=np.int64)[:, None] * (k * k) + code[None, :]).ravel()
    cm = np.bincount(flat, weights=counts.ravel().astype(float), minlength=b * k * k)
    return cm.reshape(b, k, k)


def summary(cm: np.ndarray) -> np.ndarray:
    """(B, K, K) -> (B, 4 + 3K): accuracy, f1/precision/recall macro, per-class precision, recall, F1."""
    prec, rec, f1 = per_class_scores(cm)
    acc = accuracy_from_confusion(cm)
    return np.column_stack([acc, f1.mean(-1), prec.mean(-1), rec.mean(-1), prec, rec, f1])
