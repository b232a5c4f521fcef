"""``cardgen --help`` whole-process wall time, against ``hf --help`` (huggingface_hub's CLI) in the same run.

Each command starts a fresh Python process (the installed console scripts), alternating the two, ``--runs`` times;
the medians are compared. Also checks that loading the CLI imports neither torch nor transformers.

    python benchmarks/bench_cli.py [--runs N] [--json]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, emit, load_average, log, parser  # noqa: E402

TARGET_MS = 150.0


def _script(name: str) -> list[str]:
    """The console script next to this interpreter (the venv's), else on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"`{name}` is not installed")
    return [found, "--help"]


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=21, help="runs of each command (default 21)")
    args = p.parse_args()
    if args.quick:
        args.runs = 5
    ours_cmd, peer_cmd = _script("cardgen"), _script("hf")
    probe = subprocess.run([sys.executable, "-c", "import sys, cardgen.cli; "
                            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"],
                           capture_output=True, text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    heavy = probe.stdout.strip()
    for command in (ours_cmd, peer_cmd):
        wall(command)  # warm the file cache
    ours, peer = [], []
    for i in range(args.runs):
        pair = [(ours_cmd, ours), (peer_cmd, peer)]
        for command, times in pair if i % 2 == 0 else pair[::-1]:
            times.append(wall(command))
    ours_ms, peer_ms = statistics.median(ours) * 1000, statistics.median(peer) * 1000
    log(f"cardgen --help median {ours_ms:.0f} ms, hf --help median {peer_ms:.0f} ms")
    light = heavy == "[]"
    row = Row(name="`cardgen --help` wall time (ms)", ours=ours_ms, peer=peer_ms, ratio=peer_ms / ours_ms,
              target=f"<= {TARGET_MS:g} ms", ok=ours_ms <= TARGET_MS and light,
              check=f"heavy imports when the CLI loads: {heavy}",
              detail=f"median of {args.runs} fresh processes each, alternating; peer `hf --help`; "
                     f"cardgen p90 {statistics.quantiles(ours, n=10)[-1] * 1000:.0f} ms",
              load=load_average())
    emit([row], args.json)


if __name__ == "__main__":
    main()
