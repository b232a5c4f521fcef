"""Base vs fine-tuned: `compare_stage` in a run, the `compare` library function and `cardgen compare`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import base_config

from cardgen.cli import cli
from cardgen.record import load_record

BOOTSTRAP = 100  # enough for the tests, fast enough for sklearn to recompute every interval
PERMUTATIONS = 200  # compare.permutations: the recomputation below runs sklearn once per permutation


@pytest.fixture(scope="module")
def compare_run(tiny_bert: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short tiny run with the comparison stage on (the base is an encoder, so a linear probe)."""
    from cardgen.config import load_config
    from cardgen.pipeline import run

    out = tmp_path_factory.mktemp("compare-run") / "out"
    cfg = base_config(tiny_bert, tiny_data, out, compare={"enabled": True, "bootstrap_samples": BOOTSTRAP, "seed": 3,
                                                                "permutations": PERMUTATIONS},
                      training={"num_epochs": 1})
    return run(load_config(data=cfg)).output_dir


def test_linear_probe_is_the_base_when_the_head_is_new(compare_run: Path) -> None:
    record = load_record(compare_run)
    assert {"classifier.weight", "classifier.bias"} <= set(record.model.newly_initialized)
    base, ft, c = record.base_evaluation, record.evaluation, record.comparison
    assert base is not None and ft is not None and c is not None
    assert base.method == "linear-probe" and c.method == "linear-probe"
    assert c.probe is not None and c.probe.num_train == record.data.splits["train"].num_examples == 160
    assert c.probe.feature_dim == 32  # the tiny BERT's hidden size: frozen encoder features, not logits
    assert base.labels == ft.labels and base.num_examples == ft.num_examples == c.num_examples == 64
    assert len(base.predictions) == len(base.losses) == 64
    assert c.split == ft.split == "test"
    assert "compare" in record.stage_seconds
    assert c.tests["accuracy"].startswith("exact McNemar")
    assert c.tests["f1_macro"].startswith("paired permutation")


def test_zero_shot_when_the_base_already_classifies_these_labels(tiny_run: Path, make_config: Any) -> None:
    from cardgen.config import load_config
    from cardgen.pipeline import run

    cfg = make_config(model={"name_or_path": str(tiny_run)}, compare={"enabled": True, "bootstrap_samples": BOOTSTRAP},
                      training={"num_epochs": 1, "max_steps": 2})
    result = run(load_config(cfg))
    record, base = result.record, load_record(tiny_run).evaluation
    assert "used as it is (zero-shot)" in (result.output_dir / "README.md").read_text()
    assert record.model.newly_initialized == []
    assert record.comparison is not None and record.comparison.method == "zero-shot"
    assert record.comparison.probe is None
    assert record.base_evaluation is not None and base is not None and record.base_evaluation.method == "zero-shot"
    # the base is tiny_run's model as it is: the same predictions as tiny_run's own evaluation of it
    assert record.base_evaluation.predictions == base.predictions


def test_card_has_the_comparison_section(compare_run: Path) -> None:
    from huggingface_hub import ModelCard

    text = (compare_run / "README.md").read_text()
    assert "## Comparison with the base model" in text
    assert "**linear probe**" in text and "frozen base model's features" in text
    assert "| Metric | Base [95% CI] | Fine-tuned [95% CI] | Delta [95% CI] | p-value | Test |" in text
    assert "| exact McNemar |" in text and "| paired permutation |" in text
    # model-index: the fine-tuned model's results only
    record = load_record(compare_run)
    assert record.evaluation is not None
    card = ModelCard.load(compare_run / "README.md")
    values = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert values["Accuracy"] == pytest.approx(round(record.evaluation.metrics["accuracy"], 4))
    assert len(card.data.eval_results) == len(values)


def test_run_summary_carries_the_comparison(compare_run: Path) -> None:
    from cardgen.pipeline import RunResult, summary

    record = load_record(compare_run)
    out = summary(RunResult(output_dir=compare_run, record=record))
    assert out["comparison"]["method"] == "linear-probe"
    assert set(out["comparison"]["accuracy"]) == {"base", "fine_tuned", "delta", "delta_low", "delta_high",
                                                  "p_value"}


# --------------------------------------------------------------------------------------------------------------
# Every number of the card section, recomputed from run.json with scikit-learn


def _fmt(value: float, signed: bool = False) -> str:
    value = round(float(value), 4) + 0.0
    return ("+" if signed and value > 0 else "") + f"{value:.4f}"


def _cell(point: float, low: float, high: float, signed: bool = False) -> str:
    return f"{_fmt(point, signed)} [{_fmt(low, signed)}, {_fmt(high, signed)}]"


def _sk_scores(y: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """accuracy, macro F1/precision/recall, then per-class precision, recall, F1 (scikit-learn)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=list(range(k)), zero_division=0)
    return np.concatenate([[accuracy_score(y, p), f1.mean(), prec.mean(), rec.mean()], prec, rec, f1])


def test_every_number_in_the_section_recomputes_from_run_json(compare_run: Path) -> None:
    from scipy.stats import binomtest
    from sklearn.metrics import f1_score

    raw = json.loads((compare_run / "run.json").read_text())  # plain JSON: no cardgen involved
    text = (compare_run / "README.md").read_text()
    section = text[text.index("## Comparison with the base model"):text.index("<!-- cardgen:end comparison -->")]
    cmp, names = raw["comparison"], raw["data"]["label_names"]
    y = np.array(raw["evaluation"]["labels"])
    a = np.array(raw["base_evaluation"]["predictions"])
    b = np.array(raw["evaluation"]["predictions"])
    n, k, seed, n_boot = len(y), len(names), cmp["seed"], cmp["bootstrap_samples"]
    assert (n, seed, n_boot) == (64, 3, BOOTSTRAP)

    # The documented resampling: multinomial counts of the non-empty (gold, base, fine-tuned) cells, in sorted
    # order, from default_rng([seed, 2]); each draw is a resample of the examples.
    cells, counts = np.unique(y * k * k + a * k + b, return_counts=True)
    draws = np.random.default_rng([seed, 2]).multinomial(n, counts / n, size=n_boot)
    gold, base, ft = cells // (k * k), cells // k % k, cells % k
    boot_a = np.array([_sk_scores(np.repeat(gold, d), np.repeat(base, d), k) for d in draws])
    boot_b = np.array([_sk_scores(np.repeat(gold, d), np.repeat(ft, d), k) for d in draws])
    point_a, point_b = _sk_scores(y, a, k), _sk_scores(y, b, k)

    def cell(j: int, which: str) -> str:
        stats, point = {"a": (boot_a[:, j], point_a[j]), "b": (boot_b[:, j], point_b[j]),
                        "d": (boot_b[:, j] - boot_a[:, j], point_b[j] - point_a[j])}[which]
        low, high = np.quantile(stats, [0.025, 0.975])
        return _cell(point, low, high, signed=which == "d")

    # p-values: exact McNemar for accuracy, paired permutation (swap per example, seed stream [seed, 1]) for F1
    ok_a, ok_b = a == y, b == y
    disc_b, disc_c = int(np.sum(ok_a & ~ok_b)), int(np.sum(~ok_a & ok_b))
    p_acc = binomtest(disc_c, disc_b + disc_c, 0.5).pvalue if disc_b + disc_c else 1.0
    # Permutations: in each discordant cell, binomial(count, 1/2) examples swap their two predictions
    # (default_rng([seed, 1])).
    disc = base != ft
    moved = np.random.default_rng([seed, 1]).binomial(counts[disc], 0.5, size=(cmp["permutations"], int(disc.sum())))
    observed = f1_score(y, b, average="macro") - f1_score(y, a, average="macro")
    rest = ~disc

    def permuted(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stay = counts[disc] - m
        g = np.concatenate([np.repeat(gold[rest], counts[rest]), np.repeat(gold[disc], stay), np.repeat(gold[disc], m)])
        pa = np.concatenate([np.repeat(base[rest], counts[rest]), np.repeat(base[disc], stay), np.repeat(ft[disc], m)])
        pb = np.concatenate([np.repeat(ft[rest], counts[rest]), np.repeat(ft[disc], stay), np.repeat(base[disc], m)])
        return g, pa, pb

    null = np.array([f1_score(g, pb, average="macro") - f1_score(g, pa, average="macro")
                     for g, pa, pb in map(permuted, moved)])
    p_f1 = (1 + np.sum(np.abs(null) >= abs(observed) - 1e-12)) / (1 + len(null))

    assert cmp["permutations"] == PERMUTATIONS
    for j, (name, p) in enumerate([("Accuracy", p_acc), ("F1 (macro)", p_f1)]):
        p_text = f"{p:.1e}" if 0 < p < 1e-4 else f"{p:.4f}"
        if name != "Accuracy" and p == 1 / (1 + PERMUTATIONS):  # no permutation reached it: a bound, not a value
            p_text = "< 0.005 (the smallest 200 permutations can give)"
        row = f"| {name} | {cell(j, 'a')} | {cell(j, 'b')} | {cell(j, 'd')} | {p_text} |"
        assert row in section, row
    for j, name in ((2, "Precision (macro)"), (3, "Recall (macro)")):
        row = f"| {name} | {cell(j, 'a')} | {cell(j, 'b')} | {cell(j, 'd')} |"
        assert row in section, row
    support = np.bincount(y, minlength=k)
    for i, label in enumerate(names):
        for offset, metric in enumerate(("Precision", "Recall", "F1")):
            j = 4 + offset * k + i
            row = f"| {label} | {support[i]} | {metric} | {cell(j, 'a')} | {cell(j, 'b')} | {cell(j, 'd')} |"
            assert row in section, row
    assert f"**{disc_c}** went from wrong (base) to right (fine-tuned) and **{disc_b}** from right to wrong" in section
    assert f"Of the {n} examples" in section
    texts = [json.loads(line)["text"] for line in Path(raw["data"]["splits"]["test"]["source"]).read_text().splitlines()]
    for e in cmp["wrong_to_right_examples"] + cmp["right_to_wrong_examples"]:
        assert ok_a[e["index"]] != ok_b[e["index"]]
        assert e["text"] == texts[e["index"]][:160]  # short texts stay whole
        assert f"| {e['index']} | " in section


# --------------------------------------------------------------------------------------------------------------
# The library function and the CLI


def test_model_compared_with_itself(tiny_run: Path, tiny_data: Path) -> None:
    from cardgen.compare.checkpoints import compare

    c = compare(str(tiny_run), str(tiny_run), str(tiny_data / "test.jsonl"), bootstrap_samples=BOOTSTRAP, seed=5)
    assert c.method == "zero-shot"  # a classifier with the same label names is its own baseline
    assert c.base_evaluation is not None and c.fine_tuned_evaluation is not None
    assert c.base_evaluation.predictions == c.fine_tuned_evaluation.predictions
    assert c.max_length == 32  # taken from the run's record: same truncation as the run
    for row in c.metrics + c.per_class:
        assert row.base == row.fine_tuned, row.name
        assert row.delta == [0.0, 0.0, 0.0], row.name
    assert all(row.p_value == 1.0 for row in c.metrics)
    assert c.wrong_to_right == c.right_to_wrong == 0 and not c.wrong_to_right_examples


def test_intervals_reproducible_with_a_fixed_seed() -> None:
    from cardgen.compare.classification import classification_comparison

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    a = np.where(rng.random(300) < 0.6, y, rng.integers(0, 3, 300))
    b = np.where(rng.random(300) < 0.8, y, rng.integers(0, 3, 300))
    kw: dict[str, Any] = {"texts": [f"t{i}" for i in range(300)], "split": "test", "base_model": "a",
                          "fine_tuned_model": "b", "method": "zero-shot", "n_resamples": BOOTSTRAP}
    first = classification_comparison(y, a, b, ["x", "y", "z"], seed=11, **kw)
    again = classification_comparison(y, a, b, ["x", "y", "z"], seed=11, **kw)
    other = classification_comparison(y, a, b, ["x", "y", "z"], seed=12, **kw)
    assert first == again
    assert [r.base for r in first.metrics] != [r.base for r in other.metrics]
    assert [r.base[0] for r in first.metrics] == [r.base[0] for r in other.metrics]  # points do not move
    acc = first.metrics[0]
    assert acc.delta[1] > 0 and acc.p_value is not None and acc.p_value < 0.05  # a real gain is detected


def test_cli_compare_matches_the_run_and_writes_json_and_markdown(compare_run: Path, tiny_bert: Path,
                                                                  tiny_data: Path, tmp_path: Path) -> None:
    out_json, out_md = tmp_path / "cmp.json", tmp_path / "cmp.md"
    args = ["compare", str(tiny_bert), str(compare_run), "--data", str(tiny_data / "test.jsonl"),
            "--train", str(tiny_data / "train.jsonl"), "--label-names", "negative,positive",
            "--bootstrap", str(BOOTSTRAP), "--permutations", str(PERMUTATIONS), "--seed", "3", "--json", str(out_json),
            "--markdown", str(out_md), "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Accuracy" in result.output and "McNemar" in result.output and "linear probe" in result.output
    data = json.loads(out_json.read_text())
    record = load_record(compare_run)
    assert record.base_evaluation is not None and record.evaluation is not None and record.comparison is not None
    # the same examples, truncation and seeds as the run's comparison stage give the same numbers
    assert data["method"] == "linear-probe"
    assert data["base_evaluation"]["predictions"] == record.base_evaluation.predictions
    assert data["fine_tuned_evaluation"]["predictions"] == record.evaluation.predictions
    assert [m["delta"] for m in data["metrics"]] == [m.delta for m in record.comparison.metrics]
    assert [m["p_value"] for m in data["metrics"]] == [m.p_value for m in record.comparison.metrics]
    md = out_md.read_text()
    assert md.count("## Comparison with the base model") == 1 and "| Accuracy |" in md


def test_cli_compare_bad_input_is_one_line(tiny_bert: Path, tiny_run: Path, tiny_data: Path) -> None:
    runner = CliRunner()
    no_train = runner.invoke(cli, ["compare", str(tiny_bert), str(tiny_run), "--data", str(tiny_data / "test.jsonl"),
                                   "-q"])
    assert no_train.exit_code == 2 and "--train" in no_train.output
    assert "Traceback" not in no_train.output and no_train.output.startswith("Error: ")
    missing = runner.invoke(cli, ["compare", str(tiny_bert), str(tiny_run), "--data", "nope/test.jsonl"])
    assert missing.exit_code == 2 and "nope/test.jsonl" in missing.output
    few = runner.invoke(cli, ["compare", str(tiny_run), str(tiny_run), "--data", str(tiny_data / "test.jsonl"),
                              "--bootstrap", "5"])
    assert few.exit_code == 2 and "--bootstrap" in few.output
    few = runner.invoke(cli, ["compare", str(tiny_run), str(tiny_run), "--data", str(tiny_data / "test.jsonl"),
                              "--permutations", "5"])
    assert few.exit_code == 2 and "--permutations must be >= 99" in few.output
    wrong = runner.invoke(cli, ["compare", str(tiny_run), str(tiny_run), "--data", str(tiny_data / "test.jsonl"),
                                "--label-names", "positive,negative"])
    assert wrong.exit_code == 2 and "labels" in wrong.output
    head = runner.invoke(cli, ["compare", str(tiny_run), str(tiny_bert), "--data", str(tiny_data / "test.jsonl")])
    assert head.exit_code == 2 and "no trained classification head" in head.output
