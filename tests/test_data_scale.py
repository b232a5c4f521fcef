"""The data report (duplicates, overlap between splits) at a million rows: within 10 s and 2 GB."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh process, so the peak resident memory is this workload's alone (not earlier tests' models).
SCRIPT = textwrap.dedent("""
    import json, os, threading, time
    import numpy as np, pandas as pd
    from cardgen.data_report import data_report

    def texts(rng, m, distinct):
        first = np.array(["Good", "good", "GOOD", "bad", "Bad"])[rng.integers(0, 5, m)].tolist()
        second = np.array(["movie", "plot"])[rng.integers(0, 2, m)].tolist()
        sep = np.array([" ", "  ", "\\t"])[rng.integers(0, 3, m)].tolist()
        ids = rng.integers(0, distinct, size=m).tolist()
        return [f"{a} {b}{s}#{i} and some more words of a review" for a, b, s, i in zip(first, second, sep, ids)]

    def rss():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    rng = np.random.default_rng(0)
    n = N_ROWS
    frames = {"train": pd.DataFrame({"text": texts(rng, n, n // 4), "label": rng.integers(0, 3, n)}),
              "validation": pd.DataFrame({"text": texts(rng, n // 20, n), "label": rng.integers(0, 3, n // 20)}),
              "test": pd.DataFrame({"text": texts(rng, n // 10, n), "label": rng.integers(0, 3, n // 10)})}
    before, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    thread = threading.Thread(target=sample)
    thread.start()
    start = time.perf_counter()
    report = data_report(frames, ["text"], "label", ["neg", "neu", "pos"])
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    print(json.dumps({"seconds": seconds, "peak_bytes": max(peak[0], rss()), "before_bytes": before,
                      "duplicates": report["duplicates"]["train"]["duplicate_rows"],
                      "normalized": report["duplicates"]["train"]["duplicate_rows_normalized"],
                      "conflicting": report["duplicates"]["train"]["conflicting_labels"],
                      "overlap": report["overlap"][0]["normalized"], "rows": report["split_sizes"]["train"]}))
""")


@pytest.mark.slow
def test_data_report_on_a_million_rows_within_10_s_and_2_gb() -> None:
    """1,000,000 train rows (plus 50,000 validation and 100,000 test) with many duplicates and overlaps.

    Hash tables only (one normalisation per text, no pairwise comparison). The memory bound is on the peak
    resident memory of the whole process during the report (Python, pandas and the frames included), sampled
    every 5 ms in a fresh process; see benchmarks/RESULTS.md for the measured figures.
    """
    proc = subprocess.run([sys.executable, "-c", SCRIPT.replace("N_ROWS", "1_000_000")], capture_output=True, text=True,
                          check=True, cwd=ROOT, timeout=300)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"] == 1_000_000
    assert 0 < result["duplicates"] < result["normalized"] < 1_000_000 and result["overlap"] > 0
    assert result["conflicting"] > 0
    # The 10 s target is a benchmark row (benchmarks/bench_stats.py prints it with the load), not a timed test.
    assert result["peak_bytes"] < 2 * 1024**3, result
