"""`cardgen reproduce` (issue 16 part 3): data fingerprints first, the drift table, what differs, exit 0/1/2.

The fast tests work on the shared tiny run's record; the slow ones re-run a tiny training for real: it reproduces
to 1e-6, a changed data row is refused, a perturbed learning rate drifts (exit 1), and a run published on the
(local test) Hub reproduces from its repo id.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import base_config

from cardgen.cli import cli
from cardgen.experiments.reproduce import drift_report, environment_changes, load_source
from cardgen.record import load_record


def copy_run(run: Path, data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of ``run`` whose record and config name a copy of its data (so a test may change a row)."""
    new_data = tmp_path / "data"
    shutil.copytree(data, new_data)
    new_run = tmp_path / "run"
    shutil.copytree(run, new_run)
    for name in ("run.json", "config.yaml"):
        path = new_run / name
        path.write_text(path.read_text().replace(str(data), str(new_data)))
    return new_run, new_data


def change_one_row(path: Path) -> None:
    lines = path.read_text().splitlines()
    row = json.loads(lines[3])
    row["text"] += " indeed"
    lines[3] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")


def test_changed_data_row_is_refused_before_anything_runs(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    run, data = copy_run(tiny_run, tiny_data, tmp_path)
    change_one_row(data / "train.jsonl")
    out = tmp_path / "rerun"
    result = CliRunner().invoke(cli, ["reproduce", str(run), "--output", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"the data changed since the run: {data / 'train.jsonl'} has sha256" in lines[0]
    assert "--allow-data-change" in lines[0]
    assert not out.exists()


def test_missing_data_file_and_not_a_run(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    run, data = copy_run(tiny_run, tiny_data, tmp_path)
    (data / "test.jsonl").unlink()
    result = CliRunner().invoke(cli, ["reproduce", str(run)])
    assert result.exit_code == 2 and f"{data / 'test.jsonl'} is missing" in result.stderr
    result = CliRunner().invoke(cli, ["reproduce", str(tmp_path)])
    assert result.exit_code == 2 and "is not a run directory (no run.json in it)" in result.stderr


def test_drift_report_against_itself_and_perturbed(tiny_run: Path) -> None:
    source = load_source(str(tiny_run))
    same = drift_report(source, load_record(tiny_run))
    assert same.holds and same.rows and all(r.difference == 0 for r in same.rows)
    names = {r.name for r in same.rows}
    assert {"test Accuracy", "test Loss", "training: final train loss"} <= names
    perturbed = load_record(tiny_run)
    assert perturbed.evaluation is not None
    perturbed.evaluation.metrics["loss"] += 2e-6
    perturbed.evaluation.metrics["accuracy"] += 5e-7
    report = drift_report(source, perturbed)
    drifted = {r.name for r in report.rows if not r.holds}
    assert drifted == {"test Loss"} and not report.holds  # 5e-7 is within the 1e-6 tolerance, 2e-6 is not
    assert drift_report(source, perturbed, tolerance=1e-5).holds


def test_interval_criterion_and_missing_metrics(tiny_run: Path) -> None:
    from cardgen.record import Comparison, MetricComparison

    source = load_source(str(tiny_run))
    record = load_record(tiny_run)
    assert record.evaluation is not None
    acc = record.evaluation.metrics["accuracy"]
    source.record.comparison = Comparison(
        task="text-classification", split="test", num_examples=64, base_model="b", fine_tuned_model="f",
        method="linear-probe", confidence=0.95, bootstrap_samples=1000, permutations=1000, seed=0,
        interval_method="bootstrap", metrics=[MetricComparison(key="accuracy", name="Accuracy", base=[0.5, 0.4, 0.6],
                                                               fine_tuned=[acc, acc - 0.05, acc + 0.05],
                                                               delta=[acc - 0.5, 0.3, 0.6])])
    rerun = copy.deepcopy(record)
    assert rerun.evaluation is not None
    rerun.evaluation.metrics["accuracy"] = acc - 0.01
    del rerun.evaluation.metrics["f1_macro"]
    report = drift_report(source, rerun, criterion="interval")
    rows = {r.name: r for r in report.rows}
    assert rows["test Accuracy"].inside is True and rows["test Accuracy"].holds  # inside the recorded interval
    assert rows["test Accuracy"].interval == [acc - 0.05, acc + 0.05]
    assert rows["test F1 (macro)"].rerun is None and not rows["test F1 (macro)"].holds
    assert not drift_report(source, rerun).holds  # the default: within 1e-6


def test_versions_and_hardware_that_differ(tiny_run: Path) -> None:
    recorded, rerun = load_record(tiny_run), load_record(tiny_run)
    rerun.environment.packages["torch"] = "9.9.9"
    rerun.environment.torch_threads += 3
    rerun.environment.packages.pop("datasets", None)
    changes = {(c.kind, c.name): (c.recorded, c.now) for c in environment_changes(recorded, rerun)}
    assert changes[("version", "torch")][1] == "9.9.9"
    assert changes[("hardware", "torch_threads")][1] == str(recorded.environment.torch_threads + 3)
    if "datasets" in recorded.environment.packages:
        assert changes[("version", "datasets")][1] == "not installed"
    assert environment_changes(recorded, load_record(tiny_run)) == []


# ------------------------------------------------------------------------------------------------ re-running (slow)


@pytest.fixture(scope="module")
def recorded_run(tiny_bert: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small recorded run with a comparison (so metrics have recorded intervals), with its own copies of the
    model and the data in one folder (the folder it is published from)."""
    from cardgen.config import load_config
    from cardgen.pipeline import run

    root = tmp_path_factory.mktemp("recorded")
    data, model = root / "data", root / "model"
    shutil.copytree(tiny_data, data)
    shutil.copytree(tiny_bert, model)
    cfg = base_config(model, data, root / "run", training={"num_epochs": 2}, compare={"enabled": True},
                      energy={"enabled": False})
    return run(load_config(data=cfg)).output_dir, data


def reproduce(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cardgen", "reproduce", *args], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "COLUMNS": "200", **(env or {})}, cwd=cwd)


@pytest.mark.slow
def test_reproduce_holds_to_1e_6(recorded_run: tuple[Path, Path]) -> None:
    run, _ = recorded_run
    proc = reproduce(str(run), "--json", "-q")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["holds"] and report["criterion"] == "tolerance" and report["tolerance"] == 1e-6
    assert all(abs(r["difference"]) <= 1e-6 * max(1, abs(r["recorded"])) for r in report["rows"])
    assert {"test", "test base", "test change", "training"} <= {r["group"] for r in report["rows"]}
    assert all(r["inside"] for r in report["rows"] if r["interval"] is not None)
    assert [c for c in report["changes"] if c["kind"] in ("data", "config", "hardware")] == []


@pytest.mark.slow
def test_reproduce_refuses_changed_data(recorded_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = recorded_run
    original = (data / "validation.jsonl").read_bytes()
    change_one_row(data / "validation.jsonl")
    try:
        proc = reproduce(str(run), "--output", str(tmp_path / "out"))
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and "the data changed since the run" in proc.stderr
        assert not (tmp_path / "out").exists()
        allowed = reproduce(str(run), "--allow-data-change", "--json", "-q")
        report = json.loads(allowed.stdout)
        assert allowed.returncode in (0, 1)  # the report runs; it names the change whether or not metrics drift
        assert [c["name"] for c in report["changes"] if c["kind"] == "data"] == [str(data / "validation.jsonl")]
    finally:
        (data / "validation.jsonl").write_bytes(original)


@pytest.mark.slow
def test_perturbed_learning_rate_drifts_and_exits_1(recorded_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = recorded_run
    recorded = load_record(run)
    lr = recorded.config["training"]["learning_rate"]
    proc = reproduce(str(run), "--set", f"training.learning_rate={lr * 1.2}", "--output", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "Not reproduced:" in proc.stdout and "metrics drifted" in proc.stdout
    assert "training.learning_rate" in proc.stdout  # the change is listed beside the drift
    assert (tmp_path / "out" / "run.json").is_file()  # --output keeps the re-run
    again = reproduce(str(run), "--set", f"training.learning_rate={lr * 1.2}", "--json", "-q")
    report = json.loads(again.stdout)
    drifted = [r for r in report["rows"] if not r["holds"]]
    assert drifted and any(r["name"] == "training: final train loss" for r in drifted)
    assert {"kind": "config", "name": "training.learning_rate", "recorded": repr(lr),
            "now": repr(lr * 1.2)} in report["changes"]


@pytest.mark.slow
def test_reproduce_from_a_hub_repo(recorded_run: tuple[Path, Path], tmp_path: Path) -> None:
    """Published with `cardgen push` (its run.json names data and model relative to where it was pushed from),
    plus a config.yaml; reproduced by repo id from a checkout of the same folder."""
    from hub_server import HubServer

    run, data = recorded_run
    root = data.parent
    token = "hf_cardgenREPROtoken_11aa22bb"
    with HubServer(tokens={token: "alice"}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": token, "HF_HOME": str(tmp_path / "hf"),
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1"}
        pushed = subprocess.run([sys.executable, "-m", "cardgen", "push", str(run), "--repo-id", "alice/tiny"],
                                capture_output=True, text=True, timeout=300, env={**os.environ, **env}, cwd=root)
        assert pushed.returncode == 0, pushed.stderr[-2000:]
        public = hub.files("alice/tiny")["run.json"].decode()
        assert str(root) not in public and '"data/train.jsonl"' in public
        config = (run / "config.yaml").read_text().replace(f"{root}/", "")  # as published: relative paths
        hub.commit_files("alice/tiny", {"config.yaml": config.encode()})
        proc = reproduce("alice/tiny", "--json", "-q", env=env, cwd=root)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        report = json.loads(proc.stdout)
        assert report["source"] == "alice/tiny" and report["holds"]
        assert all(r["difference"] == 0 for r in report["rows"])
        elsewhere = reproduce("alice/tiny", env=env, cwd=tmp_path)  # the data is not where the run names it
        assert elsewhere.returncode == 2 and "the data changed since the run: data/" in elsewhere.stderr
        missing = reproduce("alice/nothing-here", env=env, cwd=root)
        assert missing.returncode == 2 and "alice/nothing-here not found on the Hub" in missing.stderr
        hub.create_repo("alice/card-only")
        hub.commit_files("alice/card-only", {"README.md": (run / "README.md").read_bytes()})
        no_run = reproduce("alice/card-only", env=env, cwd=root)
        assert no_run.returncode == 2 and "has no run.json" in no_run.stderr
