"""Run every benchmark (what ``make bench`` runs) and print one table: each row a ratio against its peer measured
in the same run, its target, and whether it met it, with the machine and its load next to the numbers.

Each script runs in its own process (its models and threads do not disturb the next one) and hands back its rows
as JSON lines. ``--quick`` runs small sizes as a smoke test; ``--json FILE`` also writes the rows and the machine.

    python benchmarks/run_all.py [--quick] [--only eval,perplexity,cli,training,stats,sharded] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, load_average, machine, print_table  # noqa: E402

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "eval": "bench_eval.py",
    "perplexity": "bench_perplexity.py",
    "cli": "bench_cli.py",
    "training": "bench_training.py",
    "stats": "bench_stats.py",
    "sharded": "bench_sharded.py",
}


def run_script(name: str, quick: bool) -> tuple[list[Row], float, str]:
    """Run one script; (its rows, seconds, the tail of its stderr when it failed)."""
    command = [sys.executable, str(HERE / SCRIPTS[name]), "--json"] + (["--quick"] if quick else [])
    start = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=None, text=True, check=False)
    rows = [Row(**json.loads(line[4:])) for line in proc.stdout.splitlines() if line.startswith("ROW ")]
    failure = "" if proc.returncode == 0 else f"{SCRIPTS[name]} exited with {proc.returncode}"
    return rows, time.perf_counter() - start, failure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, one round: a smoke run")
    p.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated subset of " + ", ".join(SCRIPTS))
    p.add_argument("--json", metavar="FILE", help="also write the rows and the machine as JSON")
    args = p.parse_args()
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in SCRIPTS]
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(unknown)} (choose from {', '.join(SCRIPTS)})")
    info = machine()
    rows: list[Row] = []
    failures = []
    for name in chosen:
        print(f"== {name} ({SCRIPTS[name]})", file=sys.stderr, flush=True)
        got, seconds, failure = run_script(name, args.quick)
        rows.extend(got)
        if failure:
            failures.append(failure)
            rows.append(Row(name=f"{name}: failed", ours=float("nan"), peer=None, ratio=None, target="", ok=False,
                            check=failure, load=load_average()))
        print(f"== {name} done in {seconds:.0f} s", file=sys.stderr, flush=True)
    print(f"Machine: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads"
          + (f", GPU {info['cuda']}" if info["cuda"] else "") + f"; Python {info['python']}, PyTorch {info['torch']}, "
          f"Transformers {info['transformers']}, cardgen {info['cardgen']}")
    print(f"Load average at start {info['load_average']}, at end {load_average()} (other processes share the "
          "cores: ratios are measured in the same run, interleaved)")
    print_table(rows)
    missed = [r.name for r in rows if r.ok is False]
    pending = [r.name for r in rows if r.ok is None]
    print(f"{len(rows) - len(missed) - len(pending)} of {len(rows)} rows meet their target"
          + (f"; missed: {', '.join(missed)}" if missed else "")
          + (f"; pending: {', '.join(pending)}" if pending else "") + ". See benchmarks/RESULTS.md for why.")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "end_load_average": load_average(),
                                               "rows": [asdict(r) for r in rows]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
