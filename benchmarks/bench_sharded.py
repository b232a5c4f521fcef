"""Evaluation on every process: ``cardgen run --no-train`` of the sentiment example on 2 processes x 1 thread
(torchrun) against 1 process x 2 threads, the same cores, in the same run.

Each round runs both commands as fresh processes (alternating the order) on the VADER test split with the packaged
MiniLM, and reads the evaluation stage's wall time from each run.json (rank 0's: its share of the batches, the
gather and the metrics); whole-process wall time is reported next to it. The check: the two runs' predictions are
identical; the per-example losses and the largest metric difference are shown (torch's CPU kernels may round
differently with 1 and 2 threads, whatever the sharding: the tests compare equal thread counts bit for bit).

    python benchmarks/bench_sharded.py [--rounds N] [--quick] [--json]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Row, emit, load_average, log, parser, require_data  # noqa: E402


def command(processes: int, out: Path, limit: int | None) -> tuple[list[str], dict[str, str]]:
    """The run's command line and environment: ``processes`` ranks sharing the 2 cores' threads between them."""
    threads = max(1, (os.cpu_count() or 2) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("ACCELERATE_USE_CPU", None)
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    args = ["-m", "cardgen", "run", str(ROOT / "examples" / "sentiment.yaml"), "--no-train", "--output", str(out),
            "--overwrite", "--quiet", "--set", "benchmark.enabled=false", "--set", "compare.enabled=false"]
    if limit:
        args += ["--set", f"data.max_eval_samples={limit}"]
    return launcher + args, env


def timed_run(processes: int, out: Path, limit: int | None) -> tuple[float, float, Any]:
    """(evaluation stage seconds, whole-process seconds, the evaluation record: its ``runtime_s`` is the engine's
    share of the stage)."""
    from cardgen.record import load_record

    cmd, env = command(processes, out, limit)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:6])} ... failed:\n{done.stderr[-3000:]}")
    record = load_record(out)
    return record.stage_seconds["evaluate"], wall, record.evaluation


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="rounds of both commands (default 5)")
    args = p.parse_args()
    require_data()
    limit = 400 if args.quick else None
    rounds = 1 if args.quick else args.rounds
    times: dict[int, list[float]] = {1: [], 2: []}
    walls: dict[int, list[float]] = {1: [], 2: []}
    same = losses = True
    gap = 0.0
    engine: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for processes in (1, 2):  # warm-up: file cache, first imports
            timed_run(processes, Path(tmp) / f"p{processes}", limit)
        for r in range(rounds):
            records = {}
            for processes in ((1, 2) if r % 2 == 0 else (2, 1)):
                seconds, wall, records[processes] = timed_run(processes, Path(tmp) / f"p{processes}", limit)
                times[processes].append(seconds)
                walls[processes].append(wall)
                engine[processes].append(records[processes].runtime_s)
                log(f"round {r + 1}: {processes} process(es): evaluate {seconds:.2f} s (engine "
                    f"{records[processes].runtime_s:.2f} s), whole run {wall:.1f} s")
            one, two = records[1], records[2]
            same = same and one.predictions == two.predictions
            gap = max(gap, max(abs(one.metrics[k] - two.metrics[k]) for k in one.metrics))
            losses = losses and one.losses == two.losses
            n = one.num_examples
    ratios = [a / b for a, b in zip(times[1], times[2], strict=True)]
    row = Row(name=f"evaluation on 2 processes x 1 thread vs 1 x 2 threads ({n} test texts)",
              ours=statistics.median(times[2]), peer=statistics.median(times[1]), ratio=statistics.median(ratios),
              target="> 1x", ok=statistics.median(ratios) > 1.0 and same,
              check=("identical predictions" if same else "DIFFERENT predictions")
              + f"; per-example losses {'identical' if losses else 'differ'} (6 digits); largest metric gap {gap:.1e}",
              detail=f"evaluate stage of rank 0 (its share, the gather, the metrics); {rounds} rounds after a warm-up, "
                     f"ratio range {min(ratios):.2f}-{max(ratios):.2f}x; engine alone "
                     f"{statistics.median(engine[2]):.2f} s vs {statistics.median(engine[1]):.2f} s; whole runs "
                     f"{statistics.median(walls[2]):.1f} s vs {statistics.median(walls[1]):.1f} s (loading in each "
                     "process)",
              load=load_average())
    emit([row], args.json)


if __name__ == "__main__":
    main()
