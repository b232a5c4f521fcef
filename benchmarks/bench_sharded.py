"""Evaluation on every process: ``cardgen run --no-train`` of the sentiment example on 2 processes x 1 thread
(torchrun) against 1 process x 2 threads (the same cores), and against 1 process x 1 thread (the split itself).

Each round runs the three commands as fresh processes (the order rotating) on the VADER test split with the
packaged MiniLM, and reads the evaluation stage's wall time from each run.json (rank 0's: its share of the batches,
the gather and the metrics); the engine's own time and whole-process wall time are reported next to it. Checks:
identical predictions in all three; against 1 x 1 thread also identical losses and metrics (torch's CPU kernels
may round differently with 1 and 2 threads whatever the sharding, so against 1 x 2 the largest metric gap is shown).

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

Setup = tuple[int, int]  # (processes, threads per process)
SHARDED, ONE_CORE_EACH, ONE_THREAD = (2, 1), (1, 2), (1, 1)


def command(setup: Setup, out: Path, limit: int | None) -> tuple[list[str], dict[str, str]]:
    """The run's command line and environment for ``setup``."""
    processes, threads = setup
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("ACCELERATE_USE_CPU", None)
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    args = ["-m", "cardgen", "run", str(ROOT / "examples" / "sentiment.yaml"), "--no-train", "--output", str(out),
            "--overwrite", "--quiet", "--set", "benchmark.enabled=false", "--set", "compare.enabled=false",
            "--set", "compare.require=[]"]
    if limit:
        args += ["--set", f"data.max_eval_samples={limit}"]
    return launcher + args, env


def timed_run(setup: Setup, out: Path, limit: int | None) -> tuple[float, float, Any]:
    """(evaluation stage seconds, whole-process seconds, the evaluation record: its ``runtime_s`` is the engine's
    share of the stage)."""
    from cardgen.record import load_record

    cmd, env = command(setup, out, limit)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:6])} ... failed:\n{done.stderr[-3000:]}")
    record = load_record(out)
    return record.stage_seconds["evaluate"], wall, record.evaluation


def measure(rounds: int, limit: int | None) -> tuple[dict[str, dict[Setup, list[float]]], dict[Setup, Any]]:
    """Per setup: evaluate-stage, engine and whole-run seconds per round; and each setup's last evaluation."""
    setups = [SHARDED, ONE_CORE_EACH, ONE_THREAD]
    times: dict[str, dict[Setup, list[float]]] = {k: {s: [] for s in setups} for k in ("stage", "engine", "wall")}
    records: dict[Setup, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setup in setups:  # warm-up: file cache, first imports
            timed_run(setup, Path(tmp) / "warm", limit)
        for r in range(rounds):
            for setup in setups[r % 3:] + setups[:r % 3]:
                stage, wall, records[setup] = timed_run(setup, Path(tmp) / f"{setup[0]}x{setup[1]}", limit)
                for key, value in (("stage", stage), ("engine", records[setup].runtime_s), ("wall", wall)):
                    times[key][setup].append(value)
                log(f"round {r + 1}: {setup[0]} process(es) x {setup[1]} thread(s): evaluate {stage:.2f} s (engine "
                    f"{records[setup].runtime_s:.2f} s), whole run {wall:.1f} s")
    return times, records


def row(times: dict[str, dict[Setup, list[float]]], peer: Setup, name: str, target: float, check: str,
        ok_check: bool) -> Row:
    stage, engine, wall = times["stage"], times["engine"], times["wall"]
    ratios = [a / b for a, b in zip(stage[peer], stage[SHARDED], strict=True)]
    median = statistics.median(ratios)
    return Row(name=name, ours=statistics.median(stage[SHARDED]), peer=statistics.median(stage[peer]), ratio=median,
               target=f"> {target:g}x", ok=median > target and ok_check, check=check,
               detail=f"evaluate stage of rank 0 (its share, the gather, the metrics); {len(ratios)} rounds after a "
                      f"warm-up, ratio range {min(ratios):.2f}-{max(ratios):.2f}x; engine alone "
                      f"{statistics.median(engine[SHARDED]):.2f} s vs {statistics.median(engine[peer]):.2f} s; whole "
                      f"runs {statistics.median(wall[SHARDED]):.1f} s vs {statistics.median(wall[peer]):.1f} s "
                      "(each process loads the model)", load=load_average())


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="rounds of the three commands (default 5)")
    args = p.parse_args()
    require_data()
    limit = 400 if args.quick else None
    times, records = measure(1 if args.quick else args.rounds, limit)
    two, one = records[SHARDED], records[ONE_CORE_EACH]
    same = two.predictions == one.predictions == records[ONE_THREAD].predictions
    gap = max(abs(one.metrics[k] - two.metrics[k]) for k in one.metrics)
    exact = two.losses == records[ONE_THREAD].losses and two.metrics == records[ONE_THREAD].metrics
    n = one.num_examples
    rows = [
        row(times, ONE_CORE_EACH, f"evaluation on 2 processes x 1 thread vs 1 x 2 threads ({n} test texts)", 1.0,
            ("identical predictions" if same else "DIFFERENT predictions") + f"; largest metric gap {gap:.1e}", same),
        row(times, ONE_THREAD, f"evaluation on 2 processes x 1 thread vs 1 x 1 thread ({n} test texts)", 1.5,
            "identical predictions, losses and metrics" if exact and same else "DIFFERENT results", exact and same),
    ]
    emit(rows, args.json)


if __name__ == "__main__":
    main()
