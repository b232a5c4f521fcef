"""Statistics: point metrics, bootstrap intervals, paired tests (numpy/scipy only; no torch).

Classification statistics are resampled from the table of (gold, prediction, ...) counts (``tables``), corpus
statistics of per-document sums with count weights (``sums``); ``comparison`` computes everything a base versus
fine-tuned classification comparison needs from one table.
"""

# Permutations behind a permutation p-value where the caller does not say: the count-based tests cost almost
# nothing per permutation, and 10,000 lets a p-value go down to 1/10,001 (see ``PairedTestResult.at_floor``).
DEFAULT_PERMUTATIONS = 10_000
