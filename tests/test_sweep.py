"""`cardgen sweep`: the search space checked against the config before anything is written, a study whose trials
are scored by their best epoch, the best trial's best checkpoint kept and documented, and the trial bookkeeping
that keeps a study at exactly N trials when workers die or share it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import base_config, write_config
from test_bad_inputs import assert_one_line_error, snapshot

from cardgen.cli import cli

optuna = pytest.importorskip("optuna")

SPACE = {
    "training.learning_rate": {"type": "log-uniform", "low": 1e-4, "high": 2e-2},
    "training.train_batch_size": {"type": "categorical", "choices": [8, 16]},
}


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARDGEN_DEBUG", "")


def sweep_config(tmp: Path, bert: Path, data: Path, out: Path, space: Any = None, **sweep: Any) -> Path:
    cfg = base_config(bert, data, out, training={"learning_rate": 5e-3, "num_epochs": 3, "train_batch_size": 16,
                                                 "eval_batch_size": 32, "seed": 7},
                      sweep={"space": SPACE if space is None else space, **sweep})
    return write_config(tmp / "sweep.yaml", cfg)


# ------------------------------------------------------------------------------------------------ bad input

BAD = [
    ("unknown-key", {"training.learnin_rate": {"type": "uniform", "low": 0.1, "high": 0.2}}, ["--trials", "2"],
     "`sweep.space` key `training.learnin_rate` is not a config key; did you mean 'learning_rate'"),
    ("unknown-section", {"trainer.seed": {"type": "int", "low": 1, "high": 3}}, ["--trials", "2"], "did you mean 'training'"),
    ("unsearchable-section", {"card.license": {"type": "categorical", "choices": ["mit"]}}, ["--trials", "2"],
     "cannot be searched"),
    ("objective-key", {"training.metric_for_best_model": {"type": "categorical", "choices": ["loss"]}}, ["--trials", "2"],
     "the objective every trial is scored by"),
    ("test-data-key", {"data.test": {"type": "categorical", "choices": ["a.jsonl"]}}, ["--trials", "2"], "compared on"),
    ("section-not-value", {"training": {"type": "int", "low": 1, "high": 3}}, ["--trials", "2"], "cannot be searched"),
    ("empty-space", {}, ["--trials", "2"], "`sweep.space` is empty"),
    ("trials-zero", SPACE, ["--trials", "0"], "`--trials` must be an integer >= 1 (got '0')"),
    ("trials-missing", SPACE, [], "the sweep has no number of trials"),
    ("low-above-high", {"training.learning_rate": {"type": "log-uniform", "low": 1e-2, "high": 1e-4}}, ["--trials", "2"],
     "`sweep.space.training.learning_rate` `low` must be below `high`"),
    ("unknown-type", {"training.learning_rate": {"type": "normal", "low": 1e-4, "high": 1e-2}}, ["--trials", "2"],
     "`type` must be one of log-uniform, uniform, int, categorical"),
    ("value-refused", {"training.train_batch_size": {"type": "categorical", "choices": [16, "big"]}}, ["--trials", "2"],
     "draws 'big', which the config refuses: `training.train_batch_size` must be an integer"),
    ("range-refused", {"training.learning_rate": {"type": "uniform", "low": -1.0, "high": 1e-3}}, ["--trials", "2"],
     "`training.learning_rate` must be > 0"),
]


@pytest.mark.parametrize(("space", "args", "expect"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_sweep_input(tmp_path: Path, tiny_bert: Path, tiny_data: Path, space: Any, args: list[str],
                         expect: str) -> None:
    out = tmp_path / "out"
    cfg = sweep_config(tmp_path, tiny_bert, tiny_data, out, space=space)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["sweep", str(cfg), *args])
    assert result.exit_code == 2, (result.output, result.exception)
    assert_one_line_error(result.stderr, expect)
    assert result.stdout == ""
    assert snapshot(tmp_path) == before  # nothing written: no output directory, no study file


def test_seeds_and_sweep_do_not_combine(tmp_path: Path, tiny_bert: Path, tiny_data: Path) -> None:
    cfg = sweep_config(tmp_path, tiny_bert, tiny_data, tmp_path / "out")
    result = CliRunner().invoke(cli, ["sweep", str(cfg), "--trials", "2", "--set", "training.seeds=[1, 2]"])
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "set sweep.then_seeds")


# ------------------------------------------------------------------------------------------------ bookkeeping


def _study(tmp_path: Path) -> Any:
    return optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize")


def test_places_go_to_the_lowest_trial_numbers(tmp_path: Path) -> None:
    from cardgen.experiments.study import full, is_surplus

    study = _study(tmp_path)
    for value in (0.5, 0.6):
        study.add_trial(optuna.create_trial(value=value, params={"x": value},
                                            distributions={"x": optuna.distributions.FloatDistribution(0, 1)}))
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.FAIL))  # a failed trial frees its place
    running = study.ask()  # number 3: holds the third place
    assert not full(study, 4) and full(study, 3)
    assert not is_surplus(study, running.number, 3)
    late = study.ask()  # two workers asked at once: number 4 came after all 3 places were taken
    assert is_surplus(study, late.number, 3) and not is_surplus(study, late.number, 4)


def test_a_dead_workers_trial_is_handed_back_with_its_settings(tmp_path: Path) -> None:
    from cardgen.experiments.study import Worker, full, hand_back_dead, this_worker

    study = _study(tmp_path)
    trial = study.ask()
    trial.suggest_float("training.learning_rate", 1e-4, 1e-2, log=True)
    trial.report(0.7, 1)
    me = this_worker(tmp_path)
    dead = Worker(host=me.host, pid=2 ** 22 + 12345, started=1.0, out_dir=str(tmp_path))  # no such process
    trial.set_user_attr("worker", dead.attrs())
    alive = study.ask()
    alive.set_user_attr("worker", Worker(host=me.host, pid=os.getppid(), started=_started(os.getppid()),
                                         out_dir="elsewhere").attrs())
    assert hand_back_dead(study, me) == [trial.number]
    trials = {t.number: t for t in study.get_trials()}
    assert trials[trial.number].state.name == "FAIL"
    assert trials[alive.number].state.name == "RUNNING"  # a live worker's trial is left alone
    retry = [t for t in trials.values() if t.state.name == "WAITING"]
    assert len(retry) == 1
    assert retry[0].params == trials[trial.number].params and retry[0].intermediate_values == {1: 0.7}
    assert retry[0].system_attrs["failed_trial"] == trial.number
    assert not full(study, 2)  # the waiting retry must still be run


def _started(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).create_time())


def test_pruning_callback_reports_each_evaluation_and_stops(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from cardgen.experiments.sweep import pruning_callback

    class Trial:
        reported: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reported.append((value, step))

        def should_prune(self) -> bool:
            return len(self.reported) >= 2

    trial = Trial()
    callback = pruning_callback(trial, "accuracy")
    state = SimpleNamespace(log_history=[{"eval_loss": 0.7}])
    control = SimpleNamespace(should_training_stop=False)
    callback.on_evaluate(None, state, control, metrics={"eval_loss": 0.7, "eval_accuracy": 0.6})
    assert trial.reported == [(0.6, 1)] and not control.should_training_stop
    state.log_history.append({"eval_loss": 0.6})
    callback.on_evaluate(None, state, control, metrics={"eval_loss": 0.6, "eval_accuracy": 0.55})
    assert trial.reported[-1] == (0.55, 2) and control.should_training_stop and callback.pruned_at == 2


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def swept(tiny_bert: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    cfg = sweep_config(root, tiny_bert, tiny_data, root / "out", trials=3)
    result = CliRunner().invoke(cli, ["sweep", str(cfg), "-q", "--json"])
    assert result.exit_code == 0, result.output
    (root / "summary.json").write_text(result.stdout)
    return root / "out"


def test_the_kept_model_is_the_best_trials_best_epoch(swept: Path, tmp_path: Path) -> None:
    from cardgen.record import load_record

    rec = load_record(swept)
    assert rec.experiments is not None and rec.experiments.sweep is not None
    sw = rec.experiments.sweep
    study = optuna.load_study(study_name=sw.study_name, storage=f"sqlite:///{swept / 'study.db'}")
    finished = [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3 and len(sw.trials) == 3
    best = study.best_trial
    assert sw.best_trial == sw.kept_trial == best.number
    # the objective is the best epoch's validation metric, and the card's training record is that trial's
    tr = rec.training
    assert tr is not None
    assert tr.best_metric == best.value == max(best.intermediate_values.values())
    assert tr.best_epoch == best.user_attrs["best_epoch"]
    assert tr.arguments["learning_rate"] == best.params["training.learning_rate"]
    assert tr.arguments["per_device_train_batch_size"] == best.params["training.train_batch_size"]
    assert {str(i + 1): r.metrics["accuracy"] for i, r in enumerate(tr.epochs)} == sw.trials[best.number].values
    saved = yaml.safe_load((swept / "config.yaml").read_text())
    assert saved["training"]["learning_rate"] == best.params["training.learning_rate"]
    # the saved weights are that epoch's: scored again on the validation split, they give the trial's objective
    again = tmp_path / "again"
    result = CliRunner().invoke(cli, ["run", str(swept / "config.yaml"), "--no-train", "-q", "-o", str(again),
                                      "--set", f"model.name_or_path={swept}", "--set", "evaluation.split=validation"])
    assert result.exit_code == 0, result.output
    scored = json.loads((again / "run.json").read_text())["evaluation"]["metrics"]
    assert scored["accuracy"] == pytest.approx(best.value, abs=1e-9)
    best_row = next(r for r in tr.epochs if r.step == tr.best_step)
    assert scored["loss"] == pytest.approx(best_row.validation_loss, abs=1e-4)
    assert not (swept / "checkpoints").exists()


def test_sweep_card(swept: Path) -> None:
    from cardgen.record import load_record

    rec: Any = load_record(swept)
    sw = rec.experiments.sweep
    card = (swept / "README.md").read_text()
    section = card.split("<!-- cardgen:begin sweep -->")[1].split("<!-- cardgen:end sweep -->")[0]
    assert "## Hyperparameter search" in section
    assert "| `training.learning_rate` | log-uniform | [0.0001, 0.02] |" in section
    assert "| `training.train_batch_size` | categorical | 8, 16 |" in section
    for t in sw.trials:
        assert f"| {t.number} | " in section or f"| **{t.number}** | " in section
    assert f"| **{sw.best_trial}** | **complete** |" in section
    assert f"trial {sw.best_trial}'s best epoch" in section and "the best trial of the study" in section
    assert "sweep_objective.png" in card and (swept / "sweep_objective.png").is_file()
    assert f"The **bold** row is the best epoch by validation Accuracy ({rec.training.best_metric:.4f})" in card
    # the model-index of the kept model carries its test results
    front = yaml.safe_load(card.split("---")[1])
    metrics = {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert metrics["accuracy"] == round(rec.evaluation.metrics["accuracy"], 4)
    summary = json.loads((swept.parent / "summary.json").read_text())
    assert summary["sweep"]["best_trial"] == sw.best_trial and len(summary["sweep"]["trials"]) == 3


@pytest.mark.slow
def test_resume_of_a_finished_sweep_with_more_trials(swept: Path, tmp_path: Path, tiny_bert: Path,
                                                    tiny_data: Path) -> None:
    import shutil

    from cardgen.record import load_record

    copy = tmp_path / "out"
    shutil.copytree(swept, copy)
    cfg = sweep_config(tmp_path, tiny_bert, tiny_data, copy, trials=3)
    result = CliRunner().invoke(cli, ["sweep", str(cfg), "--resume", "--trials", "4", "-q"])
    assert result.exit_code == 0, result.output
    rec: Any = load_record(copy)
    sw = rec.experiments.sweep
    assert [t.number for t in sw.trials] == [0, 1, 2, 3]
    assert sw.best_trial == sw.kept_trial
    study = optuna.load_study(study_name=sw.study_name, storage=f"sqlite:///{copy / 'study.db'}")
    assert rec.training.best_metric == study.best_value


def test_then_seeds_retrains_the_best_settings(tmp_path: Path, tiny_bert: Path, tiny_data: Path) -> None:
    from cardgen.record import load_record

    cfg = sweep_config(tmp_path, tiny_bert, tiny_data, tmp_path / "out", trials=2, then_seeds=2)
    result = CliRunner().invoke(cli, ["sweep", str(cfg), "-q", "--set", "training.num_epochs=2"])
    assert result.exit_code == 0, result.output
    rec: Any = load_record(tmp_path / "out")
    sw, seeds = rec.experiments.sweep, rec.experiments.seeds
    best = next(t for t in sw.trials if t.number == sw.best_trial)
    assert seeds.seeds == [7, 8]
    # seed 7 with the best settings is the best trial again (same data, seed and code on one CPU)
    assert seeds.runs[0].validation_metric == pytest.approx(best.objective, abs=1e-9)
    assert rec.training.arguments["learning_rate"] == best.params["training.learning_rate"]
    assert rec.training.hyperparameters["seed"] == seeds.kept_seed
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Hyperparameter search" in card and "## Seeds" in card
    assert "trained again on 2 seeds" in card
