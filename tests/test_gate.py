"""The ship gate (compare.require): rules judged on the comparison's paired intervals, the Verdict section, exit 3
from `cardgen run` and `cardgen compare`, and bad rules refused before anything runs (issue 16 part 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import base_config, write_config

from cardgen.cli import cli
from cardgen.config import load_config
from cardgen.config.gate import RequireRule, parse_rule
from cardgen.errors import ConfigError
from cardgen.experiments.gate import judge
from cardgen.record import Comparison, MetricComparison


def comparison(key: str, base: float, ft: float, low: float, high: float) -> Comparison:
    """A comparison with one metric row: delta = ft - base with the interval [low, high]."""
    row = MetricComparison(key=key, name=key, base=[base, base - 0.02, base + 0.02], fine_tuned=[ft, ft - 0.02, ft + 0.02],
                           delta=[ft - base, low, high])
    return Comparison(task="t", split="test", num_examples=100, base_model="b", fine_tuned_model="f", method="m",
                      confidence=0.95, bootstrap_samples=1000, permutations=1000, seed=0, interval_method="bootstrap",
                      metrics=[row])


# ------------------------------------------------------------------------------------------------ judging rules


def test_superiority_needs_the_whole_interval_above_the_threshold() -> None:
    rule = RequireRule(metric="accuracy", min_delta=0.01)
    clear = judge([rule], {"test": comparison("accuracy", 0.76, 0.82, 0.04, 0.08)}, "test")
    assert clear.passed and clear.rules[0].decisive and clear.rules[0].improvement == [pytest.approx(0.06), 0.04, 0.08]
    # the point gain (+0.03) is above 0.01, but the interval's lower end is not: it does not ship
    noisy = judge([rule], {"test": comparison("accuracy", 0.76, 0.79, 0.005, 0.06)}, "test")
    assert not noisy.passed and "not above the required 0.01" in noisy.rules[0].reason
    including_zero = judge([rule], {"test": comparison("accuracy", 0.76, 0.77, -0.01, 0.03)}, "test")
    assert including_zero.rules[0].decisive is False


def test_non_inferiority_on_a_lower_is_better_metric() -> None:
    """Perplexity: the delta is turned so that positive is better, and max_worse bounds the worst end."""
    rule = RequireRule(metric="perplexity", data="general", max_worse=3.0)
    within = judge([rule], {"general": comparison("perplexity", 250.0, 251.0, -1.0, 2.5)}, "test")
    assert within.passed
    assert within.rules[0].improvement == [-1.0, -2.5, 1.0] and within.rules[0].lower_is_better
    beyond = judge([rule], {"general": comparison("perplexity", 250.0, 255.0, 2.0, 8.0)}, "test")
    assert not beyond.passed and "8.0000 higher" in beyond.rules[0].reason


def test_relative_threshold_is_a_share_of_the_base_value() -> None:
    rule = RequireRule(metric="perplexity", max_worse=0.05, relative=True)  # 5% of 100 = 5 perplexity points
    assert judge([rule], {"test": comparison("perplexity", 100.0, 103.0, 1.0, 4.9)}, "test").passed
    verdict = judge([rule], {"test": comparison("perplexity", 100.0, 103.0, 1.0, 5.1)}, "test")
    assert not verdict.passed and verdict.rules[0].threshold == pytest.approx(5.0)
    assert verdict.rules[0].threshold_text == "5% of its 100 (5)"


def test_a_rule_without_a_comparison_fails_and_says_why() -> None:
    verdict = judge([RequireRule(metric="perplexity", max_worse=1.0)], {"test": None}, "test",
                    {"test": "the base model's numbers are not meaningful"})
    assert not verdict.passed and verdict.rules[0].reason == "not judged: the base model's numbers are not meaningful"


def test_parse_rule_from_the_command_line() -> None:
    assert parse_rule("accuracy:min_delta=0.01") == RequireRule(metric="accuracy", min_delta=0.01)
    assert parse_rule("perplexity:max_worse=5%") == RequireRule(metric="perplexity", max_worse=0.05, relative=True)
    for bad in ("accuracy>0.01", "accuracy:min_delta=", "accuracy:min_delta=-1", "accuracy:best=1"):
        with pytest.raises(ConfigError, match="--require"):
            parse_rule(bad)


@pytest.mark.parametrize(("rules", "extra", "expect"), [
    ([{"metric": "bleu", "min_delta": 0.01}], {}, "'bleu' is not a metric of text-classification"),
    ([{"metric": "accuracy", "data": "general", "max_worse": 0.01}], {}, "no data.general"),
    ([{"metric": "accuracy", "data": "train", "max_worse": 0.01}], {}, "must be 'test'"),
    ([{"metric": "accuracy"}], {}, "min_delta` or max_worse must be given"),
    ([{"metric": "accuracy", "min_delta": 0.1, "max_worse": 0.1}], {}, "exclude each other"),
    ([{"metric": "accuracy", "min_delta": -0.1}], {}, "must be a number >= 0"),
    ([{"metric": "accuracy", "min_delta": 0.01}], {"training": None}, "needs training"),
])
def test_bad_rules_are_config_errors(tiny_bert: Path, tiny_data: Path, tmp_path: Path, rules: list[Any],
                                     extra: dict[str, Any], expect: str) -> None:
    cfg = base_config(tiny_bert, tiny_data, tmp_path / "out", compare={"enabled": True, "require": rules}, **extra)
    with pytest.raises(ConfigError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        load_config(data=cfg)


def test_a_gate_on_a_metric_the_task_lacks_is_one_line_exit_2_nothing_written(tiny_bert: Path, tiny_data: Path,
                                                                                tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "c.yaml", base_config(tiny_bert, tiny_data, out, compare={
        "enabled": True, "require": [{"metric": "perplexity", "max_worse": 1}]}))
    result = CliRunner().invoke(cli, ["run", str(cfg), "-q"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'perplexity' is not a metric of text-classification" in lines[0]
    assert "(hint: " in lines[0] and not out.exists()


# ------------------------------------------------------------------------------------------------ run and compare


@pytest.fixture(scope="module")
def gated_run(tiny_bert: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A tiny run through the CLI with one rule that always holds (at most 1.0 worse) and one that never can (a
    gain of more than 1.0)."""
    root = tmp_path_factory.mktemp("gated")
    cfg = write_config(root / "c.yaml", base_config(tiny_bert, tiny_data, root / "out", training={"num_epochs": 1},
                                                    compare={"enabled": True, "require": [
                                                        {"metric": "accuracy", "max_worse": 1.0},
                                                        {"metric": "f1_macro", "min_delta": 1.0}]}))
    from hub_server import HubServer

    token = "hf_cardgenGATEtoken_5e6f7a8b"
    with HubServer(tokens={token: "alice"}) as hub:  # --push-to: a model that fails its gate is not published
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(root / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        proc = subprocess.run([sys.executable, "-m", "cardgen", "run", str(cfg), "--json", "--push-to", "alice/gated",
                               "--token", token], capture_output=True, text=True, timeout=600, env=env)
        assert "alice/gated" not in hub.repos and not [r for r in hub.requests if r[0] == "POST"]
    assert "not pushed to alice/gated: a compare.require rule failed" in proc.stderr
    return root / "out", proc


def test_run_exits_3_when_a_rule_fails_and_still_writes_its_outputs(gated_run: tuple[Path, Any]) -> None:
    out, proc = gated_run
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert {"run.json", "README.md", "config.yaml", "model.safetensors"} <= {p.name for p in out.iterdir()}
    summary = json.loads(proc.stdout)
    verdict = summary["verdict"]
    assert verdict["passed"] is False and [r["passed"] for r in verdict["rules"]] == [True, False]
    record = json.loads((out / "run.json").read_text())
    assert record["verdict"] == verdict  # --json carries the same verdict as run.json
    rows = {r["key"]: r for r in record["comparison"]["metrics"]}
    assert verdict["rules"][1]["delta"] == rows["f1_macro"]["delta"]  # judged on the comparison's own interval


def test_card_verdict_section(gated_run: tuple[Path, Any]) -> None:
    out, _ = gated_run
    card = (out / "README.md").read_text()
    section = card.split("## Verdict", 1)[1].split("<!-- cardgen:end verdict -->", 1)[0]
    assert "**Fails:** 1 of 2 rules does not hold" in section and "exited with code 3" in section
    assert "| Accuracy on test may be worse than the base's by at most 1 (non-inferiority) |" in section
    assert "| F1 (macro) on test must improve by more than 1 (superiority) |" in section
    assert section.count("| pass |") == 1 and section.count("| **FAIL** |") == 1


def test_compare_require_exit_codes_and_json(gated_run: tuple[Path, Any], tiny_bert: Path, tiny_data: Path,
                                             tmp_path: Path) -> None:
    out, _ = gated_run
    args = ["compare", str(tiny_bert), str(out), "--data", str(tiny_data / "test.jsonl"), "--train",
            str(tiny_data / "train.jsonl"), "-q"]
    passing = CliRunner().invoke(cli, [*args, "--require", "accuracy:max_worse=1"])
    assert passing.exit_code == 0, passing.output
    assert "Verdict: pass" in passing.output
    failing = CliRunner().invoke(cli, [*args, "--require", "accuracy:min_delta=1", "--json", str(tmp_path / "c.json")])
    assert failing.exit_code == 3, failing.output
    verdict = json.loads((tmp_path / "c.json").read_text())["verdict"]
    assert verdict["passed"] is False and verdict["rules"][0]["kind"] == "superiority"
    bad = CliRunner().invoke(cli, [*args, "--require", "bleu:min_delta=1"])
    assert bad.exit_code == 2 and "'bleu' is not a metric of text-classification" in bad.stderr
