"""Issue 18 part 3: `training.report_to` reaches the Trainer; TensorBoard's event files land in the run's output
directory and a TensorBoard reader parses them; the training curve has a point every few steps and the learning
rate on a second axis; the card says where training was logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cardgen.cli import cli
from cardgen.record import load_record


@pytest.fixture(scope="module")
def tb_run(tiny_bert: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("tensorboard")
    from conftest import base_config, write_config

    root = tmp_path_factory.mktemp("tb-run")
    config = write_config(root / "config.yaml", base_config(tiny_bert, tiny_data, root / "out",
                                                            training={"report_to": ["tensorboard"]}))
    result = CliRunner().invoke(cli, ["run", str(config), "-q"])
    assert result.exit_code == 0, result.output
    return root / "out"


def test_tensorboard_event_files_parse(tb_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = load_record(tb_run)
    assert record.training is not None
    where = record.training.trackers["tensorboard"]
    assert where.startswith("tensorboard/")
    events = list((tb_run / where).glob("events.out.tfevents.*"))
    assert len(events) == 1
    reader = EventAccumulator(str(tb_run / where))
    reader.Reload()
    scalars = reader.Tags()["scalars"]
    assert {"train/loss", "train/learning_rate", "eval/loss", "eval/accuracy"} <= set(scalars)
    losses = reader.Scalars("train/loss")
    # 160 examples, batch 16, 4 epochs: 40 steps, logged every ceil(40/30) = 2 steps
    assert [e.step for e in losses] == [p.step for p in record.training.curve] == list(range(2, 41, 2))
    assert [round(e.value, 4) for e in losses] == [round(p.loss, 4) for p in record.training.curve]
    assert len(reader.Scalars("eval/loss")) == 4  # one evaluation per epoch
    assert "tensorboard" in record.outputs
    assert record.training.arguments["report_to"] == ["tensorboard"]


def test_curve_has_steps_and_the_learning_rate(tb_run: Path) -> None:
    from cardgen.card.plots import training_curves

    record = load_record(tb_run)
    assert record.training is not None
    curve = record.training.curve
    assert len(curve) == 20 > len(record.training.epochs) == 4
    rates = [p.learning_rate for p in curve]
    assert all(r is not None for r in rates) and rates[0] > rates[-1]  # the linear schedule decays
    fig = training_curves(record)
    loss_ax, metric_ax, lr_ax = fig.axes  # the learning rate: a second y axis on the loss panel
    assert lr_ax.get_ylabel() == "learning rate" and lr_ax.get_shared_x_axes().joined(loss_ax, lr_ax)
    assert len(loss_ax.lines[0].get_xdata()) == 20  # training loss at every logged step
    assert len(lr_ax.lines[0].get_ydata()) == 20
    assert metric_ax.get_ylabel() == "Accuracy"
    # the epoch table's training loss is the mean over each epoch's logged steps
    first = [p.loss for p in curve if p.step <= record.training.epochs[0].step]
    assert record.training.epochs[0].training_loss == pytest.approx(sum(first) / len(first))


def test_card_and_push_carry_the_tracker(tb_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = (tb_run / "README.md").read_text()
    where = load_record(tb_run).training.trackers["tensorboard"]  # type: ignore[union-attr]
    assert f"Training was also logged to TensorBoard (event files in {where})." in card
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = CliRunner().invoke(cli, ["push", str(tb_run), "--repo-id", "alice/tb", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    files = [f["path"] for f in json.loads(result.stdout)["files"]]
    assert any(f.startswith(f"{where}/events.out.tfevents.") for f in files)
