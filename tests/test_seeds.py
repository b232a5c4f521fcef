"""``training.seeds`` / ``--seeds N``: one training per seed, the seed best on validation kept, the spread of the
test metrics (mean ± std, t interval of the mean) and the base -> fine-tuned change against that spread."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import base_config, write_config

from cardgen.card.experiments import against_spread
from cardgen.cli import cli
from cardgen.config import load_config
from cardgen.errors import ConfigError
from cardgen.record import SpreadStats, load_record
from cardgen.stats.spread import spread


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDGEN_DEBUG", "")


def test_spread_is_the_t_interval_of_the_mean() -> None:
    s = spread([0.80, 0.82, 0.84])
    assert s.n == 3 and s.mean == pytest.approx(0.82) and s.std == pytest.approx(0.02)
    half = 4.302652729911275 * 0.02 / math.sqrt(3)  # t(0.975, 2 dof): not the normal 1.96
    assert (s.low, s.high) == (pytest.approx(0.82 - half), pytest.approx(0.82 + half))
    assert (s.minimum, s.maximum) == (0.80, 0.84)
    one = spread([0.5])
    assert one.std is None and one.low is None


def _stats(mean: float, std: float, n: int = 3) -> SpreadStats:
    half = {3: 4.302652729911275, 5: 2.7764451051977987}[n] * std / math.sqrt(n)
    return SpreadStats(n=n, mean=mean, std=std, low=mean - half, high=mean + half, minimum=mean - std,
                       maximum=mean + std)


def test_change_against_the_seed_spread() -> None:
    decisive = against_spread("accuracy", 0.75, _stats(0.8205, 0.0075))
    assert decisive["verdict"].startswith("the gain is 9.4 seed standard deviations")
    assert "excludes 0" in decisive["verdict"]
    small = against_spread("accuracy", 0.80, _stats(0.805, 0.01))
    assert small["verdict"] == "smaller than the seed spread (0.5 seed standard deviations): not decisive"
    # 2 standard deviations with 3 seeds: the t interval of the mean (half-width 2.48 std) still spans the base
    wide = against_spread("accuracy", 0.80, _stats(0.82, 0.01))
    assert "2.0 seed standard deviations" in wide["verdict"] and "includes 0: not decisive" in wide["verdict"]
    worse = against_spread("perplexity", 50.0, _stats(60.0, 1.0))  # lower is better: a rise is a loss
    assert worse["verdict"].startswith("the loss is 10.0 seed standard deviations")
    flat = against_spread("accuracy", 0.7, SpreadStats(n=3, mean=0.8, std=0.0, low=0.8, high=0.8, minimum=0.8,
                                                        maximum=0.8))
    assert "every seed gave the same value" in flat["verdict"]


def test_seeds_config_checks() -> None:
    with pytest.raises(ConfigError, match="at least 2 different seeds"):
        load_config(data={"model": "m", "data": {"train": "t.csv"}, "training": {"seeds": [1, 1]}})
    with pytest.raises(ConfigError, match="at least 2 different seeds"):
        load_config(data={"model": "m", "data": {"train": "t.csv"}, "training": {"seeds": [3]}})


@pytest.mark.parametrize(("args", "expect"), [
    (["--seeds", "1"], "`--seeds` must be an integer >= 2"),
    (["--seeds", "two"], "`--seeds` must be an integer >= 2"),
    (["--seeds", "3", "--no-train"], "--seeds needs training"),
])
def test_seeds_flag_bad_values(tmp_path: Path, tiny_bert: Path, tiny_data: Path, args: list[str],
                               expect: str) -> None:
    cfg = write_config(tmp_path / "c.yaml", base_config(tiny_bert, tiny_data, tmp_path / "out"))
    result = CliRunner().invoke(cli, ["run", str(cfg), *args])
    assert result.exit_code == 2, result.output
    assert expect in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def seeds_run(tiny_bert: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three seeds of the tiny classifier, through `cardgen run --seeds 3`, with the base comparison."""
    root = tmp_path_factory.mktemp("seeds")
    cfg = base_config(tiny_bert, tiny_data, root / "out", training={
        "learning_rate": 4e-3, "num_epochs": 3, "train_batch_size": 16, "eval_batch_size": 32, "seed": 7},
        compare={"enabled": True, "bootstrap_samples": 200})
    result = CliRunner().invoke(cli, ["run", str(write_config(root / "c.yaml", cfg)), "--seeds", "3", "-q"])
    assert result.exit_code == 0, result.output
    return root / "out"


def test_seeds_run_keeps_the_seed_best_on_validation(seeds_run: Path) -> None:
    rec = load_record(seeds_run)
    assert rec.experiments is not None and rec.experiments.seeds is not None
    seeds = rec.experiments.seeds
    assert seeds.seeds == [7, 8, 9] and [r.seed for r in seeds.runs] == [7, 8, 9]
    assert len({r.train_loss for r in seeds.runs}) == 3  # three different trainings, not one run three times
    best = max(r.validation_metric for r in seeds.runs)
    assert seeds.kept_seed == next(r.seed for r in seeds.runs if r.validation_metric == best)  # first of ties
    kept = next(r for r in seeds.runs if r.seed == seeds.kept_seed)
    # The saved model is that seed's: its training record and its test numbers are the card's.
    assert rec.training is not None and rec.training.hyperparameters["seed"] == seeds.kept_seed
    assert rec.training.best_metric == kept.validation_metric and rec.training.best_epoch == kept.best_epoch
    assert rec.evaluation is not None
    for key, value in kept.test_metrics.items():
        assert rec.evaluation.metrics[key] == pytest.approx(value, abs=1e-9), key
    accuracy = [r.test_metrics["accuracy"] for r in seeds.runs]
    assert seeds.test["accuracy"].mean == pytest.approx(sum(accuracy) / 3)
    assert seeds.test["accuracy"].std == pytest.approx(spread(accuracy).std)
    # the comparison ran once, on the kept model
    assert rec.comparison is not None and rec.comparison.metrics[0].fine_tuned[0] == pytest.approx(
        rec.evaluation.metrics[rec.comparison.metrics[0].key])
    assert not (seeds_run / "checkpoints").exists()  # the seeds' checkpoints went with the other checkpoints
    assert yaml.safe_load((seeds_run / "config.yaml").read_text())["training"]["seeds"] == [7, 8, 9]


def test_seeds_card(seeds_run: Path) -> None:
    card = (seeds_run / "README.md").read_text()
    section = card.split("<!-- cardgen:begin seeds -->")[1].split("<!-- cardgen:end seeds -->")[0]
    rec: Any = load_record(seeds_run)
    seeds = rec.experiments.seeds
    assert "## Seeds" in section and "trained 3 times, with seeds 7, 8, 9" in section
    for run in seeds.runs:
        assert f"| {run.seed} |" in section or f"| **{run.seed}** |" in section
    assert f"| **{seeds.kept_seed}** |" in section  # the kept seed's row is bold
    assert f"seed {seeds.kept_seed}'s (the bold row): the best of the 3 seeds by validation Accuracy" in section
    s = seeds.test["accuracy"]
    assert f"| Accuracy | {s.mean:.4f} ± {s.std:.4f} | [{s.low:.4f}, {s.high:.4f}] |" in section
    assert "95% Student t interval of the mean" in section
    row = next(line for line in section.splitlines() if line.startswith("| Accuracy | ") and line.count("|") == 6)
    assert "seed standard deviations" in row or "same value" in row
    base = rec.comparison.metrics[0].base[0]
    assert f"| Accuracy | {base:.4f} |" in row


def test_seeds_card_rerenders_from_run_json(seeds_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(seeds_run, copy, ignore=shutil.ignore_patterns("*.safetensors"))
    before = (copy / "README.md").read_text()
    result = CliRunner().invoke(cli, ["card", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "README.md").read_text() == before


@pytest.mark.slow
def test_ctrl_c_in_the_second_seed_then_resume_equals_an_uninterrupted_run(
        seeds_run: Path, tiny_bert: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    import cardgen.train as train_mod

    original = train_mod._callbacks
    saves = []

    def interrupting(progress: Any, stop: Any, patience: Any) -> list[Any]:
        from transformers import TrainerCallback

        class CtrlC(TrainerCallback):  # type: ignore[misc]
            def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                saves.append(args.output_dir)
                if len(saves) == 4:  # seed 7 saved 3 epochs; this is seed 8's first
                    os.kill(os.getpid(), signal.SIGINT)

        return [*original(progress, stop, patience), CtrlC()]

    monkeypatch.setattr(train_mod, "_callbacks", interrupting)
    cfg = base_config(tiny_bert, tiny_data, tmp_path / "out", training={
        "learning_rate": 4e-3, "num_epochs": 3, "train_batch_size": 16, "eval_batch_size": 32, "seed": 7},
        compare={"enabled": True, "bootstrap_samples": 200})
    path = write_config(tmp_path / "c.yaml", cfg)
    stopped = CliRunner().invoke(cli, ["run", str(path), "--seeds", "3", "-q"])
    assert stopped.exit_code == 130, stopped.output
    assert "seeds" in saves[3] and "seed-8" in saves[3]
    interrupted = load_record(tmp_path / "out")
    assert interrupted.status == "interrupted" and interrupted.experiments is not None
    assert [r.seed for r in interrupted.experiments.seeds.runs] == [7]  # type: ignore[union-attr]
    monkeypatch.setattr(train_mod, "_callbacks", original)
    resumed = CliRunner().invoke(cli, ["run", str(path), "--seeds", "3", "--resume", "-q"])
    assert resumed.exit_code == 0, resumed.output
    a, b = load_record(seeds_run).experiments.seeds, load_record(tmp_path / "out").experiments.seeds  # type: ignore
    assert b.runs[1].resumed_from is not None and b.runs[1].resumed_from.startswith("checkpoint-")
    for ra, rb in zip(a.runs, b.runs, strict=True):
        assert rb.validation_metric == pytest.approx(ra.validation_metric, abs=1e-6)
        for key, value in ra.test_metrics.items():
            assert rb.test_metrics[key] == pytest.approx(value, abs=1e-6), (ra.seed, key)
    assert a.kept_seed == b.kept_seed
