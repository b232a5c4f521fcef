"""Resampling corpus statistics of per-document sums with count weights and matrix products.

A statistic of sums (perplexity, bits per byte, mean EM/F1, corpus BLEU) needs only ``sum_i w_i x_i`` of each
resample, where ``w`` are the resample's counts of each document (a ``Multinomial(n, 1/n)`` draw) and ``x_i`` the
document's vector of sufficient statistics. One block of resamples is then one matrix product ``W @ X`` of the
(block, n) counts with the (n, d) per-document matrix, instead of gathering ``d`` arrays of shape (block, n).

The counts are built from the same seeded indices as the per-example path (``default_rng(seed).integers(0, n,
(block, n))``, counted per row), so both resample exactly the same documents and agree to rounding. A paired
permutation swaps each document's two vectors with probability 1/2: with the swap indicators ``S`` (the stream
``default_rng([seed, 1]).random((block, n)) < 0.5``, as before) the permuted sums are ``sum A + S @ (B - A)`` and
``sum B - S @ (B - A)``: again one matrix product per block.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cardgen.stats.metrics import SumStatistic

# Upper bound on the elements of one (block, n) count matrix, so memory stays bounded for large corpora.
_BLOCK_ELEMENTS = 4_000_000


def _blocks(total: int, n: int) -> Iterator[int]:
    size = max(1, _BLOCK_ELEMENTS // max(n, 1))
    done = 0
    while done < total:
        step = min(size, total - done)
        yield step
        done += step


def count_weights(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap counts, float64 of shape (block, n): row ``r`` counts how often each of the ``n``
    documents was drawn in resample ``r`` (the indices of :func:`cardgen.stats.intervals.resample_stats`)."""
    rng = np.random.default_rng(seed)
    for block in _blocks(n_resamples, n):
        idx = rng.integers(0, n, size=(block, n))
        idx += np.arange(block, dtype=np.int64)[:, None] * n
        yield np.bincount(idx.ravel(), minlength=block * n).reshape(block, n).astype(np.float64)


def swap_indicators(n: int, n_permutations: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of permutation swaps, float64 0/1 of shape (block, n), from the stream ``default_rng([seed, 1])``."""
    rng = np.random.default_rng([seed, 1])
    for block in _blocks(n_permutations, n):
        yield (rng.random((block, n)) < 0.5).astype(np.float64)


def bootstrap_sums(stat: SumStatistic, data: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """``stat`` of each bootstrap resample of the rows of ``data`` (n, d): shape (n_resamples,)."""
    x = np.ascontiguousarray(data, dtype=np.float64)
    return np.concatenate([stat.of_sums(w @ x) for w in count_weights(len(x), n_resamples, seed)])


def paired_bootstrap_sums(stat: SumStatistic, data_a: np.ndarray, data_b: np.ndarray, n_resamples: int,
                          seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``stat`` of A and of B on the same bootstrap resamples of documents: two arrays of shape (n_resamples,).

    The two products are separate calls of the same shape, so identical data give bit-identical results (a model
    compared with itself: every delta exactly 0).
    """
    xa = np.ascontiguousarray(data_a, dtype=np.float64)
    xb = np.ascontiguousarray(data_b, dtype=np.float64)
    out_a, out_b = [], []
    for w in count_weights(len(xa), n_resamples, seed):
        out_a.append(stat.of_sums(w @ xa))
        out_b.append(stat.of_sums(w @ xb))
    return np.concatenate(out_a), np.concatenate(out_b)


def permuted_deltas(stat: SumStatistic, data_a: np.ndarray, data_b: np.ndarray, n_permutations: int,
                    seed: int) -> np.ndarray:
    """``stat(B) - stat(A)`` after swapping each document's two rows with probability 1/2: (n_permutations,)."""
    xa = np.ascontiguousarray(data_a, dtype=np.float64)
    xb = np.ascontiguousarray(data_b, dtype=np.float64)
    total_a, total_b = xa.sum(axis=0), xb.sum(axis=0)
    diff = xb - xa
    out = []
    for s in swap_indicators(len(xa), n_permutations, seed):
        shift = s @ diff
        out.append(stat.of_sums(total_b[None] - shift) - stat.of_sums(total_a[None] + shift))
    return np.concatenate(out)
