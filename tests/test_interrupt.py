"""Interruptions: Ctrl-C stops at a checkpoint and leaves an honest run.json; a SIGKILL loses nothing that
``--resume`` cannot recover; two runs never write into the same directory at once.

The runs are real ``cardgen run`` subprocesses. A small launcher (written to tmp_path) adds one Trainer callback
that sleeps a little after each step and notes each saved checkpoint in a file, so a test can send its signal at
a known point: after the first checkpoint, in the middle of the next epoch. The sleep changes no number.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import base_config, write_config
from paced import LAUNCHER, paced_env, saved_steps


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """One-line errors, even after an in-process `--debug` elsewhere set CARDGEN_DEBUG in os.environ."""
    monkeypatch.setenv("CARDGEN_DEBUG", "")

# tiny data: 160 train examples, batch 16 -> 10 steps an epoch; 3 epochs
TRAINING = {"learning_rate": 5e-3, "num_epochs": 3, "train_batch_size": 16, "eval_batch_size": 32, "seed": 11}


class Launch:
    """One `cardgen run` subprocess through the launcher."""

    def __init__(self, root: Path, cfg: Path, *args: str, sleep: float = 0.0, name: str = "run") -> None:
        self.saved = root / f"{name}.saved"
        self.saved.unlink(missing_ok=True)
        self.stderr_path = root / f"{name}.stderr"
        self.stdout_path = root / f"{name}.stdout"
        launcher = root / "launch_cardgen.py"
        if not launcher.exists():
            launcher.write_text(LAUNCHER)
        self.proc = subprocess.Popen(
            [sys.executable, str(launcher), "run", str(cfg), *args],
            stdout=self.stdout_path.open("w"), stderr=self.stderr_path.open("w"), env=paced_env(self.saved, sleep),
        )

    def checkpoints_saved(self) -> list[int]:
        return saved_steps(self.saved)

    def wait_for_checkpoint(self, timeout: float = 240) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            steps = self.checkpoints_saved()
            if steps:
                return steps[0]
            if self.proc.poll() is not None:
                pytest.fail(f"run ended before its first checkpoint:\n{self.stderr}")
            time.sleep(0.05)
        self.proc.kill()
        pytest.fail("no checkpoint in time")

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout=timeout)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()


def record(out: Path) -> dict[str, Any]:
    return json.loads((out / "run.json").read_text())


def assert_same_results(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Test metrics, per-example losses and every per-epoch validation number agree to 1e-6."""
    assert a["evaluation"]["predictions"] == b["evaluation"]["predictions"]
    for key, value in a["evaluation"]["metrics"].items():
        assert b["evaluation"]["metrics"][key] == pytest.approx(value, abs=1e-6), key
    assert b["evaluation"]["losses"] == pytest.approx(a["evaluation"]["losses"], abs=1e-6)
    rows_a, rows_b = a["training"]["epochs"], b["training"]["epochs"]
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert rb["validation_loss"] == pytest.approx(ra["validation_loss"], abs=1e-6)
        for key, value in ra["metrics"].items():
            assert rb["metrics"][key] == pytest.approx(value, abs=1e-6), key
    assert b["training"]["best_step"] == a["training"]["best_step"]
    assert b["training"]["global_step"] == a["training"]["global_step"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("interrupt")


@pytest.fixture(scope="module")
def baseline(workdir: Path, tiny_bert: Path, tiny_data: Path) -> dict[str, Any]:
    """An uninterrupted run with the same config and seed (in a subprocess, like the runs it is compared to)."""
    out = workdir / "baseline"
    cfg = write_config(workdir / "baseline.yaml", base_config(tiny_bert, tiny_data, out, training=TRAINING))
    run = Launch(workdir, cfg, "-q", name="baseline")
    assert run.wait() == 0, run.stderr
    assert run.checkpoints_saved() == [10, 20, 30]
    return record(out)


def config_for(tmp_path: Path, tiny_bert: Path, tiny_data: Path) -> tuple[Path, Path]:
    out = tmp_path / "out"
    return write_config(tmp_path / "config.yaml", base_config(tiny_bert, tiny_data, out, training=TRAINING)), out


@pytest.mark.slow
def test_ctrl_c_stops_at_a_checkpoint_and_resume_finishes_the_same_run(
        baseline: dict[str, Any], tmp_path: Path, tiny_bert: Path, tiny_data: Path) -> None:
    cfg, out = config_for(tmp_path, tiny_bert, tiny_data)
    run = Launch(tmp_path, cfg, sleep=0.15)
    assert run.wait_for_checkpoint() == 10
    time.sleep(0.4)  # a few steps into epoch 2
    run.proc.send_signal(signal.SIGINT)
    assert run.wait() == 130, run.stderr
    # one line, and it says how to continue
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "interrupted" in errors[0] and "--resume" in errors[0], run.stderr
    stopped_at = run.checkpoints_saved()[-1]
    assert 10 < stopped_at < 20, run.checkpoints_saved()  # stopped mid-epoch, at a checkpoint saved on the way out

    rec = record(out)
    assert rec["status"] == "interrupted"
    assert rec["evaluation"] is None
    assert rec["training"]["global_step"] == stopped_at
    assert (out / f"checkpoints/checkpoint-{stopped_at}/trainer_state.json").is_file()
    assert not (out / "model.safetensors").exists()  # a half-trained model is not presented as the result
    assert not (out / ".cardgen.lock").exists()
    assert "ended early (interrupted)" in (out / "README.md").read_text()

    resumed = Launch(tmp_path, cfg, "--resume", "-q", name="resume")
    assert resumed.wait() == 0, resumed.stderr
    final = record(out)
    assert final["status"] == "completed"
    assert final["training"]["resumed_from"] == f"checkpoint-{stopped_at}"
    assert (out / "model.safetensors").is_file() and not (out / "checkpoints").exists()
    assert "ended early" not in (out / "README.md").read_text()
    assert_same_results(baseline, final)


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_equals_an_uninterrupted_run(
        baseline: dict[str, Any], tmp_path: Path, tiny_bert: Path, tiny_data: Path) -> None:
    cfg, out = config_for(tmp_path, tiny_bert, tiny_data)
    run = Launch(tmp_path, cfg, "-q", sleep=0.15)
    assert run.wait_for_checkpoint() == 10
    time.sleep(0.4)
    run.proc.kill()
    assert run.wait() == -signal.SIGKILL
    assert not (out / "run.json").exists()
    # A checkpoint being written when the process died has no trainer_state.json yet: resume must skip it.
    (out / "checkpoints" / "checkpoint-15").mkdir()
    (out / "checkpoints" / "checkpoint-15" / "model.safetensors").write_bytes(b"half written")

    # the directory is not empty, so a plain run refuses; --resume continues (the dead run's lock is gone)
    from click.testing import CliRunner

    from cardgen.cli import cli

    again = CliRunner().invoke(cli, ["run", str(cfg), "-q"])
    assert again.exit_code == 2 and "--resume" in again.stderr
    resumed = Launch(tmp_path, cfg, "--resume", "-q", name="resume")
    assert resumed.wait() == 0, resumed.stderr
    final = record(out)
    assert final["status"] == "completed" and final["training"]["resumed_from"] == "checkpoint-10"
    assert_same_results(baseline, final)


def test_second_run_into_the_same_directory_fails_and_the_first_is_unharmed(
        tmp_path: Path, tiny_bert: Path, tiny_data: Path) -> None:
    import transformers  # noqa: F401 - imported before the race starts, so the second run answers at once
    from click.testing import CliRunner

    from cardgen.cli import cli

    out = tmp_path / "out"
    cfg = write_config(tmp_path / "config.yaml",
                       base_config(tiny_bert, tiny_data, out, training={**TRAINING, "num_epochs": 1}))
    first = Launch(tmp_path, cfg, "-q", sleep=0.3)  # 10 steps: at least 3 s of training
    deadline = time.monotonic() + 240
    while not (out / ".cardgen.lock").is_file() and first.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (out / ".cardgen.lock").is_file(), first.stderr
    for extra in (["--overwrite"], ["--resume"]):
        second = CliRunner().invoke(cli, ["run", str(cfg), "-q", *extra])
        assert second.exit_code == 2, second.output
        assert "another cardgen run is writing to" in second.stderr and "Traceback" not in second.stderr
    assert first.proc.poll() is None, "the second run should have failed while the first was still training"
    assert first.wait() == 0, first.stderr
    assert not (out / ".cardgen.lock").exists()
    final = record(out)
    assert final["status"] == "completed" and final["training"]["global_step"] == 10
    assert final["evaluation"]["num_examples"] == 64
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
