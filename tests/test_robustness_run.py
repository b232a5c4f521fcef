"""Issue 13, a run's lifecycle: nothing lost, nothing destroyed.

Cases 1 (lengths checked against the model's positions before anything runs; a stage failing after training
keeps the trained model and the record), 2 (SIGTERM like Ctrl-C), 3 (the lock first, then the emptiness check),
4 (an --output holding the run's inputs), 5 (--overwrite removes exactly what the previous run wrote), 11 (write
errors as one line; the outputs committed as a set) and 17 (stale temp files of cardgen's own). Each reproduction
asserts the one-line error (exit 2) or the behaviour, and byte-identical inputs and outputs where nothing should
change. Faults (a full disk, a crashing stage) are injected at the layer below the code that handles them.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import base_config, write_config
from test_bad_inputs import assert_one_line_error, snapshot
from test_interrupt import TRAINING, Launch, assert_same_results, baseline, record, workdir

from cardgen.cli import cli

__all__ = ["baseline", "workdir"]  # fixtures shared with test_interrupt

FAST = {"num_epochs": 1}
MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json")


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDGEN_DEBUG", "")


def config(tmp_path: Path, bert: Path, data: Path, out: Path, name: str = "config.yaml", **sections: Any) -> Path:
    sections["training"] = {**base_config(bert, data, out)["training"], **FAST, **sections.get("training", {})}
    return write_config(tmp_path / name, base_config(bert, data, out, **sections))


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args])


def fails(result: Any, expect: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    return assert_one_line_error(result.stderr, expect)


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# ------------------------------------------------------------------------- 1: lengths, failures after training


def test_benchmark_sequence_length_over_the_positions_is_refused_before_anything_runs(
        tmp_path: Path, tiny_bert: Path, tiny_data: Path) -> None:
    out = tmp_path / "out"
    cfg = config(tmp_path, tiny_bert, tiny_data, out)
    result = invoke("run", cfg, "-q", "--set", "benchmark.enabled=true", "--set", "benchmark.sequence_length=4096")
    line = fails(result, "`benchmark.sequence_length` is 4096 tokens")
    assert "128 positions, config.max_position_embeddings" in line and "at most 128" in line
    assert not out.exists()


def test_max_length_with_a_tokenizer_without_model_max_length_is_refused(
        tmp_path: Path, tiny_bert: Path, tiny_data: Path) -> None:
    model = copy_tree(tiny_bert, tmp_path / "no-limit")
    tok_cfg = json.loads((model / "tokenizer_config.json").read_text())
    tok_cfg.pop("model_max_length", None)
    (model / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    before = snapshot(model)
    out = tmp_path / "out"
    cfg = config(tmp_path, model, tiny_data, out)
    fails(invoke("run", cfg, "-q", "--set", "data.max_length=4096"), "`data.max_length` is 4096 tokens")
    assert not out.exists() and snapshot(model) == before


def test_bench_seq_len_over_the_positions_is_one_line(tmp_path: Path, tiny_bert: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    line = fails(invoke("bench", tiny_bert, "--seq-len", "4096"), "`--seq-len` is 4096 tokens")
    assert "at most 128" in line
    assert snapshot(tmp_path) == before


def test_a_stage_failing_after_training_keeps_the_model_and_the_record(
        tmp_path: Path, tiny_bert: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cardgen.bench.stage

    def crash(*args: Any, **kwargs: Any) -> Any:  # the fault: what a real stage could raise hours in
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(cardgen.bench.stage, "benchmark_stage", crash)
    out = tmp_path / "out"
    cfg = config(tmp_path, tiny_bert, tiny_data, out, benchmark={"enabled": True})
    line = fails(invoke("run", cfg, "-q"), "the run failed at benchmark")
    assert "RuntimeError: CUDA error" in line and str(out) in line
    rec = record(out)
    assert rec["status"] == "failed at benchmark"
    assert rec["training"]["global_step"] == 10 and rec["evaluation"]["num_examples"] == 64
    assert rec["benchmark"] is None
    assert all((out / name).is_file() for name in MODEL_FILES)
    assert sorted(rec["outputs"]) == sorted(p.name for p in out.iterdir())
    assert "ended early (failed at benchmark)" in (out / "README.md").read_text()
    assert not (out / "checkpoints").exists() and not (out / ".cardgen.lock").exists()


# ------------------------------------------------------------------------------------------ 2: SIGTERM


@pytest.mark.slow
def test_sigterm_mid_training_then_resume_equals_an_uninterrupted_run(
        baseline: dict[str, Any], tmp_path: Path, tiny_bert: Path, tiny_data: Path) -> None:
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "config.yaml", base_config(tiny_bert, tiny_data, out, training=TRAINING))
    run = Launch(tmp_path, cfg, sleep=0.15)
    assert run.wait_for_checkpoint() == 10
    time.sleep(0.4)  # a few steps into epoch 2
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() == 130, run.stderr
    line = assert_one_line_error(run.stderr, "training interrupted")
    assert "--resume" in line
    stopped_at = run.checkpoints_saved()[-1]
    assert 10 < stopped_at < 20, run.checkpoints_saved()
    rec = record(out)
    assert rec["status"] == "interrupted" and rec["training"]["global_step"] == stopped_at
    assert (out / f"checkpoints/checkpoint-{stopped_at}/trainer_state.json").is_file()
    assert not (out / ".cardgen.lock").exists() and not (out / "model.safetensors").exists()

    resumed = Launch(tmp_path, cfg, "--resume", "-q", name="resume")
    assert resumed.wait() == 0, resumed.stderr
    final = record(out)
    assert final["status"] == "completed" and final["training"]["resumed_from"] == f"checkpoint-{stopped_at}"
    assert_same_results(baseline, final)


@pytest.mark.slow
def test_a_second_sigterm_stops_at_once_and_releases_the_lock(tmp_path: Path, tiny_bert: Path,
                                                               tiny_data: Path) -> None:
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "config.yaml", base_config(tiny_bert, tiny_data, out, training=TRAINING))
    run = Launch(tmp_path, cfg, sleep=0.3)
    assert run.wait_for_checkpoint() == 10
    run.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 130, run.stderr
    assert "Traceback" not in run.stderr
    assert not (out / ".cardgen.lock").exists()
    assert (out / "checkpoints/checkpoint-10/trainer_state.json").is_file()  # what was saved stays whole


# ------------------------------------------------------------------------------ 3: the lock, then the check


def test_the_directory_is_checked_again_once_the_lock_is_held(
        tmp_path: Path, tiny_bert: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another run finishes between the first (fast) check and the lock: this run must refuse, not write over it."""
    import cardgen.files

    out = tmp_path / "out"
    cfg = config(tmp_path, tiny_bert, tiny_data, out)
    real_lock = cardgen.files.output_lock

    def lock_after_another_run(directory: Path) -> Any:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "run.json").write_text('{"the other run": true}\n')
        (directory / "confusion_matrix.png").write_bytes(b"png")
        return real_lock(directory)

    monkeypatch.setattr(cardgen.files, "output_lock", lock_after_another_run)
    fails(invoke("run", cfg, "-q"), "is not empty")
    assert (out / "run.json").read_text() == '{"the other run": true}\n'
    assert (out / "confusion_matrix.png").read_bytes() == b"png" and not (out / ".cardgen.lock").exists()


def test_a_second_run_while_the_first_prepares_its_data_is_refused(
        tmp_path: Path, tiny_bert: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first run holds the lock from the start: a second one started during its data preparation fails."""
    import cardgen.tasks.classification as classification

    out = tmp_path / "out"
    cfg = config(tmp_path, tiny_bert, tiny_data, out)
    real_prepare = classification.prepare_data
    second: list[Any] = []

    def slow_prepare(*args: Any, **kwargs: Any) -> Any:
        if not second:
            second.append(None)
            second[0] = invoke("run", cfg, "-q", "--set", "training=null")
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(classification, "prepare_data", slow_prepare)
    first = invoke("run", cfg, "-q")
    assert first.exit_code == 0, first.output
    fails(second[0], "another cardgen run is writing to")
    assert record(out)["training"]["global_step"] == 10


# ------------------------------------------------------------------------ 4: inputs inside the output directory


@pytest.mark.parametrize("where", ["data", "model", "template"])
def test_an_output_directory_holding_an_input_is_refused(where: str, tmp_path: Path, tiny_bert: Path,
                                                         tiny_data: Path) -> None:
    data = copy_tree(tiny_data, tmp_path / "data")
    (data / "README.md").write_text("# my data set\n\nwritten by hand\n")
    (data / "config.json").write_text('{"my": "config"}\n')
    model = copy_tree(tiny_bert, tmp_path / "model")
    template = tmp_path / "tpl" / "card.md.j2"
    template.parent.mkdir()
    template.write_text("# {{ model_name }}\n")
    out = {"data": data, "model": model, "template": template.parent}[where]
    cfg = config(tmp_path, model, data, tmp_path / "unused", card={"template": str(template)})
    before = {p: snapshot(p) for p in (data, model, template.parent)}
    line = fails(invoke("run", cfg, "-q", "--output", out, "--overwrite"), "holds the run's input")
    assert {"data": "data.train", "model": "model.name_or_path", "template": "card.template"}[where] in line
    assert {p: snapshot(p) for p in (data, model, template.parent)} == before


# ------------------------------------------------------------------ 5: --overwrite replaces exactly the old set


def test_overwrite_without_training_removes_the_previous_model(tmp_path: Path, tiny_run: Path, tiny_bert: Path,
                                                               tiny_data: Path) -> None:
    out = copy_tree(tiny_run, tmp_path / "out")
    (out / "notes.txt").write_text("mine\n")
    (out / "extra").mkdir()
    (out / "extra" / "keep.bin").write_bytes(b"\x00\x01")
    old = record(out)["outputs"]
    assert set(MODEL_FILES) <= set(old)
    cfg = config(tmp_path, tiny_bert, tiny_data, out)
    result = invoke("run", cfg, "-q", "--no-train", "--overwrite")
    assert result.exit_code == 0, result.output
    rec = record(out)
    assert rec["training"] is None
    assert not any((out / name).exists() for name in MODEL_FILES)
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "extra" / "keep.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in out.iterdir()) == sorted([*rec["outputs"], "notes.txt", "extra"])


def test_overwrite_of_a_record_without_an_output_list_removes_the_usual_files(
        tmp_path: Path, tiny_run: Path, tiny_bert: Path, tiny_data: Path) -> None:
    out = copy_tree(tiny_run, tmp_path / "out")
    rec = record(out)
    del rec["outputs"]  # written before the list existed
    (out / "run.json").write_text(json.dumps(rec))
    (out / "notes.txt").write_text("mine\n")
    cfg = config(tmp_path, tiny_bert, tiny_data, out)
    assert invoke("run", cfg, "-q", "--no-train", "--overwrite").exit_code == 0
    assert not (out / "model.safetensors").exists() and not (out / "config.json").exists()
    assert (out / "notes.txt").is_file()


def test_a_record_naming_paths_outside_its_directory_deletes_nothing_there(
        tmp_path: Path, tiny_run: Path, tiny_bert: Path, tiny_data: Path) -> None:
    out = copy_tree(tiny_run, tmp_path / "out")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    rec = record(out)
    rec["outputs"] += ["../victim.txt", str(victim), ".cardgen.lock", ".."]
    (out / "run.json").write_text(json.dumps(rec))
    cfg = config(tmp_path, tiny_bert, tiny_data, out)
    assert invoke("run", cfg, "-q", "--no-train", "--overwrite").exit_code == 0
    assert victim.read_text() == "precious\n"


# ----------------------------------------------------------------------------- 11: write errors, one set


class DiskFull:
    """Make every atomic write of a file whose name contains ``name`` fail with ENOSPC (the write layer)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        import cardgen.files

        real = os.fdopen

        def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
            if f".{name}." in os.readlink(f"/proc/self/fd/{fd}"):
                os.close(fd)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, *args, **kwargs)

        monkeypatch.setattr(cardgen.files.os, "fdopen", fdopen)


@pytest.mark.parametrize("name", ["README.md", "run.json", "config.yaml"])
def test_a_full_disk_while_writing_outputs_leaves_the_previous_set_whole(
        name: str, tmp_path: Path, tiny_run: Path, tiny_bert: Path, tiny_data: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = copy_tree(tiny_run, tmp_path / "out")
    before = snapshot(out)
    cfg = config(tmp_path, tiny_bert, tiny_data, out)
    DiskFull(monkeypatch, name)
    line = fails(invoke("run", cfg, "-q", "--no-train", "--overwrite"), "No space left on device")
    assert f"cannot write {out / name}: " in line
    assert "free disk space" in line
    assert snapshot(out) == before  # the old card, record, config and model, nothing staged left behind


def test_a_full_disk_after_training_keeps_the_previous_set_and_this_runs_checkpoints(
        tmp_path: Path, tiny_run: Path, tiny_bert: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = copy_tree(tiny_run, tmp_path / "out")
    before = snapshot(out)
    cfg = config(tmp_path, tiny_bert, tiny_data, out)
    DiskFull(monkeypatch, "README.md")
    fails(invoke("run", cfg, "-q", "--overwrite"), "No space left on device")
    after = snapshot(out)
    assert after is not None and before is not None
    assert {k: v for k, v in after.items() if not k.startswith("checkpoints")} == before


def test_a_full_disk_in_a_checkpoint_is_one_line_and_the_half_checkpoint_is_removed(
        tmp_path: Path, tiny_bert: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import Trainer

    def save_checkpoint(self: Any, model: Any, trial: Any) -> None:
        target = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        target.mkdir(parents=True)
        (target / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target / "optimizer.pt"))

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_checkpoint)
    out = tmp_path / "out"
    cfg = config(tmp_path, tiny_bert, tiny_data, out)
    line = fails(invoke("run", cfg, "-q"), "No space left on device")
    assert "optimizer.pt" in line
    assert not (out / "checkpoints" / "checkpoint-10").exists()
    assert not (out / ".cardgen.lock").exists()


def test_a_failed_rename_puts_the_previous_set_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cardgen.files
    from cardgen.errors import OutputError
    from cardgen.files import commit_files, staging_dir

    out = tmp_path / "out"
    out.mkdir()
    for name, text in (("run.json", "old record"), ("README.md", "old card"), ("model.safetensors", "old")):
        (out / name).write_text(text)
    before = snapshot(out)
    stage = staging_dir(out)
    (stage / "run.json").write_text("new record")
    (stage / "README.md").write_text("new card")
    real, calls = os.replace, []

    def replace(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 5:  # 3 moved aside, one new file placed, then the disk (or a mount) fails
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(src, dst)

    monkeypatch.setattr(cardgen.files.os, "replace", replace)
    with pytest.raises(OutputError, match="cannot write"):
        commit_files(stage, out, remove=["model.safetensors"])
    monkeypatch.undo()
    shutil.rmtree(stage)
    assert snapshot(out) == before


# --------------------------------------------------------------------------- 17: stale temp files of our own


def test_stale_temp_files_do_not_make_a_directory_not_empty(tmp_path: Path, tiny_bert: Path,
                                                            tiny_data: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in (".README.md.a1b2c3d4.tmp", ".run.json.zz_9y8x7.tmp", ".staging-abcd1234"):
        (out / name).write_text("left by a SIGKILL") if "tmp" in name else (out / name).mkdir()
    cfg = config(tmp_path, tiny_bert, tiny_data, out)
    result = invoke("run", cfg, "-q", "--no-train")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(record(out)["outputs"])


def test_the_next_write_removes_stale_temp_files_of_that_file(tmp_path: Path, tiny_run: Path) -> None:
    run_dir = copy_tree(tiny_run, tmp_path / "run")
    stale, fresh = run_dir / ".README.md.k1ll3d00.tmp", run_dir / ".README.md.wr1t1ng0.tmp"
    stale.write_text("cut off")
    fresh.write_text("a write in progress elsewhere")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    user = run_dir / ".notes.txt"  # not cardgen's: a hidden file of the user's
    user.write_text("mine")
    result = invoke("card", run_dir)
    assert result.exit_code == 0, result.output
    assert not stale.exists() and fresh.exists() and user.read_text() == "mine"
