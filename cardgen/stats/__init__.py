"""Statistics: point metrics, bootstrap intervals, paired tests (numpy/scipy only; no torch)."""
