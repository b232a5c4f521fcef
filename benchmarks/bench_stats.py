"""Statistics at the limit: the full classification comparison from counts vs the per-example code it replaced,
its scaling to ten million examples, and the data report (duplicates, overlap) on a million rows.

"Full comparison" is what ``cardgen.compare.classification_comparison`` computes, without a model: intervals of both
models, the accuracy delta, exact McNemar, paired permutation tests of macro F1, precision and recall, per-class
deltas and flips. cardgen: ``cardgen.stats.comparison.classification_comparison_stats`` (one (gold, base, ft) table;
it also tests accuracy and every per-class metric by permutation) plus ``flips``. Peer: ``peer_stats.full_comparison``,
the per-example functions of commit ebd85a3 kept verbatim. Both with 1,000 resamples and 1,000 permutations (the
peer's default; cardgen's own default is 10,000 permutations, timed too). Synthetic predictions, K = 3, base right
70% of the time, fine-tuned 80%, correlated.

    python benchmarks/bench_stats.py [--n 200000] [--rounds 3] [--quick] [--json]
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, emit, load_average, log, parser  # noqa: E402

RATIO_TARGET = 50.0
LARGE_SECONDS = 2.0
DATA_SECONDS, DATA_BYTES = 10.0, 2 * 1024**3


def predictions(n: int, k: int = 3, seed: int = 0):  # noqa: ANN201
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n, dtype=np.int64)
    a = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, size=n))
    b = np.where(rng.random(n) < 0.5, a, np.where(rng.random(n) < 0.8, y, rng.integers(0, k, size=n)))
    return y, a, b


def ours(y, a, b, k: int = 3, n_permutations: int = 1000):  # noqa: ANN001, ANN201
    from cardgen.stats.comparison import classification_comparison_stats
    from cardgen.stats.paired import flips

    return classification_comparison_stats(y, a, b, k, n_resamples=1000, seed=0,
                                           n_permutations=n_permutations), flips(y, a, b)


def peak_bytes(fn) -> int:  # noqa: ANN001
    """Peak bytes allocated (numpy included) while ``fn`` runs, above what was allocated before."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def comparison_rows(n: int, rounds: int, peer_rounds: int) -> list[Row]:
    import peer_stats

    y, a, b = predictions(n)
    ours(y[:1000], a[:1000], b[:1000])  # warm-up: imports (scipy.stats), first calls
    peer_stats.full_comparison(y[:1000], a[:1000], b[:1000], 3)
    peer_times, our_times = [], []
    for r in range(max(rounds, peer_rounds)):
        if r < peer_rounds:
            start = time.perf_counter()
            ref = peer_stats.full_comparison(y, a, b, 3)
            peer_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        got, _ = ours(y, a, b)
        our_times.append(time.perf_counter() - start)
        log(f"n={n:,} round {r}: peer {peer_times[-1] if r < peer_rounds else float('nan'):.2f}s, "
            f"cardgen {our_times[-1] * 1000:.1f} ms")
    same = (abs(got.deltas["f1_macro"].delta - ref["f1_macro"].delta) < 1e-12
            and got.mcnemar.p_value == ref["mcnemar"].p_value)
    gap = max(abs(got.deltas["f1_macro"].low - ref["f1_macro"].low), abs(got.base.accuracy.high - ref["base"].accuracy.high))
    peer_s, our_s = statistics.median(peer_times), statistics.median(our_times)
    ratio = peer_s / our_s
    return [Row(name=f"classification comparison, n = {n:,}, K = 3, vs per-example", ours=our_s, peer=peer_s,
                ratio=ratio, target=f">= {RATIO_TARGET:g}x", ok=ratio >= RATIO_TARGET and same,
                check=f"same deltas and McNemar p; endpoints within {gap:.1e} (Monte-Carlo)",
                detail=f"1,000 resamples and permutations; peer {len(peer_times)} round(s), cardgen {len(our_times)}; "
                       f"cardgen range {min(our_times) * 1000:.0f}-{max(our_times) * 1000:.0f} ms",
                load=load_average())]


def scaling_rows(sizes: list[int], rounds: int) -> list[Row]:
    rows = []
    for n in sizes:
        y, a, b = predictions(n)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            ours(y, a, b, n_permutations=10_000)
            times.append(time.perf_counter() - start)
        peak = peak_bytes(lambda y=y, a=a, b=b: ours(y, a, b, n_permutations=10_000))
        seconds = statistics.median(times)
        large = n >= 10_000_000
        rows.append(Row(name=f"full comparison from counts, n = {n:,}", ours=seconds, peer=None, ratio=None,
                        target=f"<= {LARGE_SECONDS:g} s" if large else "(scaling)",
                        ok=seconds <= LARGE_SECONDS if large else True,
                        check=f"peak {peak / 1e6:.0f} MB above the inputs ({n * 3 * 8 / 1e6:.0f} MB)",
                        detail=f"1,000 resamples, 10,000 permutations (the default); median of {rounds}",
                        load=load_average()))
        log(f"n={n:,}: {seconds:.3f} s, peak {peak / 1e6:.0f} MB")
        del y, a, b
    return rows


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def data_row(n: int) -> Row:
    import numpy as np
    import pandas as pd

    from cardgen.data_report import data_report

    rng = np.random.default_rng(0)

    def texts(m: int, distinct: int) -> list[str]:
        first = np.array(["Good", "good", "GOOD", "bad", "Bad"])[rng.integers(0, 5, m)].tolist()
        sep = np.array([" ", "  ", "\t"])[rng.integers(0, 3, m)].tolist()
        ids = rng.integers(0, distinct, size=m).tolist()
        return [f"{w} movie{s}#{i} and some more words of a review" for w, s, i in zip(first, sep, ids, strict=True)]

    frames = {"train": pd.DataFrame({"text": texts(n, n // 4), "label": rng.integers(0, 3, n)}),
              "validation": pd.DataFrame({"text": texts(n // 20, n), "label": rng.integers(0, 3, n // 20)}),
              "test": pd.DataFrame({"text": texts(n // 10, n), "label": rng.integers(0, 3, n // 10)})}
    before, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
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
    top = max(peak[0], rss())
    dup = report["duplicates"]["train"]
    return Row(name=f"data report (duplicates, overlap), {n:,} train rows", ours=seconds, peer=None, ratio=None,
               target=f"<= {DATA_SECONDS:g} s, <= 2 GB", ok=seconds <= DATA_SECONDS and top <= DATA_BYTES,
               check=f"peak RSS {top / 1e9:.2f} GB (process; {(top - before) / 1e9:.2f} GB for the report)",
               detail=f"+{n // 20:,} validation, {n // 10:,} test rows; {dup['duplicate_rows']:,} exact / "
                      f"{dup['duplicate_rows_normalized']:,} normalised duplicates, "
                      f"{report['overlap'][0]['normalized']:,} test rows in train", load=load_average())


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000, help="examples of the ratio row (default 200,000)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of cardgen (default 3)")
    p.add_argument("--peer-rounds", type=int, default=1, help="timed rounds of the peer (default 1: minutes each)")
    p.add_argument("--data-rows", type=int, default=1_000_000, help="train rows of the data-report row")
    args = p.parse_args()
    sizes = [10_000, 100_000, 1_000_000, 10_000_000]
    if args.quick:
        args.n, args.rounds, args.data_rows, sizes = 10_000, 1, 100_000, [10_000, 100_000]
    rows = comparison_rows(args.n, args.rounds, args.peer_rounds)
    rows += scaling_rows(sizes, args.rounds)
    rows.append(data_row(args.data_rows))
    emit(rows, args.json)


if __name__ == "__main__":
    main()
