"""Multi-process training: torchrun and accelerate launch, two processes on CPU with gloo; one card, 2 devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cardgen.record import load_record


def launch(launcher: list[str], config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    env.pop("ACCELERATE_USE_CPU", None)
    cmd = [*launcher, "-m", "cardgen", "run", str(config), "--output", str(out), "--json", "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def check_two_process_run(out: Path, done: subprocess.CompletedProcess[str], make_config: Any = None) -> None:
    assert done.returncode == 0, done.stderr[-4000:]
    record = load_record(out)
    tr = record.training
    assert tr is not None and record.evaluation is not None
    assert tr.num_devices == 2 and tr.total_train_batch_size == 32 and tr.total_eval_batch_size == 64
    # 160 training examples in global batches of 2 x 16: 5 steps per epoch, not 10 (each process a shard)
    assert tr.global_step == 5 * 4 and [r.step for r in tr.epochs] == [5, 10, 15, 20]
    # losses are means over examples, not multiplied by the number of processes
    assert all(r.validation_loss is not None and r.validation_loss < 0.8 for r in tr.epochs)
    assert tr.epochs[0].training_loss is not None and tr.epochs[0].training_loss < 0.8
    card = (out / "README.md").read_text()
    for line in ("- num_devices: 2", "- total_train_batch_size: 32", "- total_eval_batch_size: 64",
                 "- distributed_type: multi-process", "- train_batch_size: 16"):
        assert line in card, line
    assert card.count("<!-- cardgen:begin summary -->") == 1
    assert (out / "model.safetensors").is_file() and (out / "training_curves.png").is_file()
    assert not (out / "checkpoints").exists() and not (out / ".cardgen.lock").exists()
    # only the main process reports: one JSON summary with the test metrics (non-main ranks print a stub or nothing)
    summaries = [json.loads(chunk) for chunk in done.stdout.replace("}\n{", "}\n\x00{").split("\x00") if chunk.strip()]
    assert [s["test_metrics"] is not None for s in summaries].count(True) == 1
    if make_config is not None:
        # Both processes evaluated the test split, each its share: the same numbers as one process (one thread, as
        # each of the two had) evaluating the saved model alone.
        config = make_config("alone.yaml", model={"name_or_path": str(out)}, training=None)
        solo = launch([sys.executable], config, out.with_name("alone"))
        assert solo.returncode == 0, solo.stderr[-4000:]
        alone = load_record(out.with_name("alone")).evaluation
        ev = record.evaluation
        assert alone is not None and alone.predictions == ev.predictions and alone.losses == ev.losses
        assert alone.metrics == ev.metrics


@pytest.mark.slow
def test_torchrun_two_processes_one_card(make_config, tmp_path: Path) -> None:
    config = make_config()
    out = tmp_path / "ddp"
    done = launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
                  config, out)
    check_two_process_run(out, done, make_config)


@pytest.mark.slow
def test_accelerate_launch_two_processes_one_card(make_config, tmp_path: Path) -> None:
    config = make_config()
    out = tmp_path / "acc"
    accelerate = Path(sys.executable).with_name("accelerate")
    launcher = [str(accelerate) if accelerate.exists() else "accelerate", "launch", "--multi_gpu",
                "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", "0"]
    done = launch(launcher, config, out)
    check_two_process_run(out, done)


def test_non_main_process_writes_nothing(tiny_run: Path, make_config, tmp_path: Path, monkeypatch) -> None:
    """A rank other than 0 (no training here: no process group) evaluates nothing and leaves no trace."""
    from cardgen.config import load_config
    from cardgen.pipeline import run

    monkeypatch.setenv("RANK", "1")
    out = tmp_path / "rank1"
    cfg = load_config(make_config(model={"name_or_path": str(tiny_run)}, training=None),
                      [f"output.dir={out}"])
    result = run(cfg)
    assert result.record.evaluation is None
    assert not out.exists()


def test_prepare_distributed_uses_the_cpu_without_cuda(monkeypatch) -> None:
    import torch

    from cardgen.distributed import prepare_distributed

    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    prepare_distributed()
    assert "ACCELERATE_USE_CPU" not in os.environ  # a single process is left alone
    monkeypatch.setenv("WORLD_SIZE", "2")
    prepare_distributed()
    assert os.environ.get("ACCELERATE_USE_CPU") == (None if torch.cuda.is_available() else "true")


def test_sharded_training_is_checked_not_refused(make_config, monkeypatch, tmp_path: Path) -> None:
    """FSDP and ZeRO-3 are no longer refused (every process evaluates); ZeRO-3 must be able to save the whole model,
    and FSDP without CUDA is said to train as DDP."""
    import torch

    from cardgen.config import load_config
    from cardgen.distributed import check_distributed
    from cardgen.errors import ConfigError

    fsdp = load_config(make_config(training={"extra_args": {"fsdp": "full_shard"}}))
    zero3 = {"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}}
    gathered = load_config(make_config("z3.yaml", training={"extra_args": {"deepspeed": zero3}}))
    ds_file = tmp_path / "ds.json"
    ds_file.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    ungathered = load_config(make_config("z3-file.yaml", training={"extra_args": {"deepspeed": str(ds_file)}}))
    assert check_distributed(fsdp) == check_distributed(ungathered) == []  # one process: nothing sharded
    monkeypatch.setenv("WORLD_SIZE", "2")
    warnings = check_distributed(fsdp)
    assert bool(warnings) == (not torch.cuda.is_available())
    assert all("DDP" in w for w in warnings)
    assert check_distributed(gathered) == []
    with pytest.raises(ConfigError, match="stage3_gather_16bit_weights_on_model_save"):
        check_distributed(ungathered)
