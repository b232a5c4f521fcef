"""benchmarks/gpu_check.py (``make gpu-check``): one clear line without CUDA, a CPU dry run of every check a CPU
can run (so the script is not dead code here), and the real thing on a GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

pytest.importorskip("peft")


def test_without_cuda_it_exits_with_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 2
    assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert "no CUDA GPU" in proc.stderr and "--cpu" in proc.stderr


def test_cpu_dry_run_runs_every_check(tiny_bert: Path, tiny_data: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import gpu_check

    code = gpu_check.main(["--cpu", "--model", str(tiny_bert), "--data", str(tiny_data), "--out", str(tmp_path),
                           "--json", str(tmp_path / "checks.json")])
    out = capsys.readouterr().out
    checks = {c["name"]: c for c in json.loads((tmp_path / "checks.json").read_text())["checks"]}
    assert code == 0, out
    assert len(checks) == 7 and "| Check | OK | Result |" in out
    # what a CPU can check passes; the CUDA-only parts say they were skipped, never silently pass
    for name in ("timer", "autocast bf16 / fp16", "LoRA + bf16 training", "fp32 predictions = CPU"):
        assert checks[name]["ok"] is True, checks[name]
    for name in ("allocator peaks", "eval batch growth", "QLoRA (4-bit NF4)"):
        assert checks[name]["ok"] is None and "skipped" in checks[name]["detail"], checks[name]
    assert "refused in one line" in checks["QLoRA (4-bit NF4)"]["detail"]
    assert (tmp_path / "lora-bf16" / "adapter_model.safetensors").is_file()


@pytest.mark.gpu
def test_gpu_check_on_a_gpu(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--json",
                           str(tmp_path / "checks.json")], capture_output=True, text=True, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
