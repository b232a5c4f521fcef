"""The forgetting check (issue 16 part 5): data.general scored for base and fine-tuned model, with paired
intervals, shown beside the target-task gain; a bad general set is refused before anything is written."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import base_config, sentiment_rows, write_config, write_jsonl
from test_tasks_lm import lm_config

from cardgen.cli import cli
from cardgen.config import load_config
from cardgen.record import load_record


def test_general_shorthand_and_path_resolution(tiny_bert: Path, tiny_data: Path, tmp_path: Path) -> None:
    cfg = base_config(tiny_bert, tiny_data, tmp_path / "out")
    cfg["data"]["general"] = "general.jsonl"  # relative to the config file
    path = write_config(tmp_path / "c.yaml", cfg)
    general = load_config(path).data.general
    assert general is not None and general.file == str(tmp_path / "general.jsonl")
    override = load_config(path, ["data.general.max_samples=5"]).data.general
    assert override is not None and override.max_samples == 5 and override.file == general.file


@pytest.mark.parametrize(("rows", "expect"), [
    (None, "does not exist"),
    ([{"text": "good movie", "label": "neutral"}], "not among the label names"),
    ([{"sentence": "good movie", "label": "positive"}], "column 'text' is missing"),
])
def test_bad_general_set_is_one_line_exit_2_nothing_written(tiny_bert: Path, tiny_data: Path, tmp_path: Path,
                                                            rows: list[dict[str, Any]] | None, expect: str) -> None:
    general = tmp_path / "general.jsonl"
    if rows is not None:
        write_jsonl(general, rows)
    out = tmp_path / "out"
    cfg = base_config(tiny_bert, tiny_data, out)
    cfg["data"]["general"] = {"file": str(general)}
    result = CliRunner().invoke(cli, ["run", str(write_config(tmp_path / "c.yaml", cfg)), "-q"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expect in lines[0] and "(hint: fix data.general" in lines[0]
    assert lines[0].startswith("Error: data.general: ")
    assert not out.exists()


@pytest.fixture(scope="module")
def classifier_run(tiny_bert: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cardgen.pipeline import run

    root = tmp_path_factory.mktemp("general-cls")
    write_jsonl(root / "general.jsonl", sentiment_rows(40, 11))
    cfg = base_config(tiny_bert, tiny_data, root / "out", training={"num_epochs": 1}, compare={"enabled": True},
                      energy={"enabled": False})
    cfg["data"]["general"] = {"file": str(root / "general.jsonl"), "name": "other reviews"}
    return run(load_config(data=cfg)).output_dir


def test_classifier_general_set_both_models_and_paired_interval(classifier_run: Path) -> None:
    record = load_record(classifier_run)
    g = record.general
    assert g is not None and g.num_examples == 40 and g.fine_tuned is not None and g.base is not None
    assert g.base.method == record.base_evaluation.method == "linear-probe"  # the same honest base as the task's
    assert g.fine_tuned.split == g.base.split == "general"
    assert g.comparison is not None and g.comparison.num_examples == 40
    acc = next(r for r in g.comparison.metrics if r.key == "accuracy")
    assert acc.fine_tuned[0] == pytest.approx(g.fine_tuned.metrics["accuracy"])
    assert acc.base[0] == pytest.approx(g.base.metrics["accuracy"])
    assert acc.delta[1] <= acc.delta[0] <= acc.delta[2]
    assert list(g.files.values())[0] == __import__("hashlib").sha256(Path(g.source).read_bytes()).hexdigest()


def test_card_shows_general_beside_the_target_gain(classifier_run: Path) -> None:
    record = load_record(classifier_run)
    text = (classifier_run / "README.md").read_text()
    section = text.split("## Forgetting check", 1)[1].split("<!-- cardgen:end forgetting -->", 1)[0]
    assert "**other reviews** (40 examples" in section
    assert "| Metric | Target task (test): base → fine-tuned | General set: base → fine-tuned |" in section
    row = next(line for line in section.splitlines() if line.startswith("| Accuracy |"))
    target, general = row.split(" | ")[1:3]
    assert f"{record.evaluation.metrics['accuracy']:.4f}" in target
    assert f"{record.general.fine_tuned.metrics['accuracy']:.4f}" in general and "change" in general


def lm_texts_about(words: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 9))).capitalize() + "." for _ in range(n)]


@pytest.fixture(scope="module")
def causal_general_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_tasks_lm import build_tiny_gpt2, write_lm_splits

    from cardgen.pipeline import run

    root = tmp_path_factory.mktemp("general-clm")
    model = build_tiny_gpt2(root / "gpt2")
    write_lm_splits(root, 200, 30, 30)
    # text of another kind: city words the training data hardly uses
    write_jsonl(root / "general.jsonl", [{"text": t} for t in lm_texts_about(["paris", "france", "capital", "city",
                                                                              "of", "is"], 30, 4)])
    cfg = lm_config(model, root, root / "out", "causal-lm", lm={"block_size": 32, "stride": 16},
                    compare={"require": [{"metric": "perplexity", "data": "general", "max_worse": 0.05,
                                          "relative": True}]})
    cfg["data"]["general"] = {"file": str(root / "general.jsonl"), "name": "city sentences"}
    return run(load_config(data=cfg)).output_dir


def test_causal_lm_general_base_is_scored_before_training(causal_general_run: Path) -> None:
    record = load_record(causal_general_run)
    g = record.general
    assert g is not None and g.base is not None and g.fine_tuned is not None and g.comparison is not None
    assert g.base.extra["meaningful"] is True
    assert g.base.extra["predicted_tokens"] == g.fine_tuned.extra["predicted_tokens"]  # the same stream
    assert g.fine_tuned.extra["generations"] == []  # prompts belong to the target task
    ppl = next(r for r in g.comparison.metrics if r.key == "perplexity")
    assert ppl.base[0] == pytest.approx(g.base.metrics["perplexity"])
    assert ppl.fine_tuned[0] == pytest.approx(g.fine_tuned.metrics["perplexity"])
    # the gate's rule on the general set was judged on that interval, relative to the base's perplexity
    (rule,) = record.verdict.rules
    assert rule.data == "general" and rule.delta == ppl.delta
    assert rule.threshold == pytest.approx(0.05 * ppl.base[0])
    assert rule.passed == (ppl.delta[2] <= rule.threshold)
    text = (causal_general_run / "README.md").read_text()
    assert "## Forgetting check" in text and "Perplexity (lower is better)" in text and "## Verdict" in text
