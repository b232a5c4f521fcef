"""Issue 18 part 1: start without a config. `cardgen run --model M --data D` infers the task, the text and label
columns, the label names and the splits, says so (console and card), and `cardgen init` writes the same run as a
commented config that `cardgen check` accepts and `cardgen run` reproduces. Ambiguity is one line naming a flag."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import sentiment_rows, write_jsonl

from cardgen.cli import cli

FAST = ["--set", "compare.enabled=false", "--set", "benchmark.enabled=false", "--set", "training.num_epochs=2",
        "--set", "training.learning_rate=5e-3", "--set", "data.max_length=32", "-q"]


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: r[k] for k in columns} for r in rows)
    return path


@pytest.fixture()
def reviews(tmp_path: Path) -> Path:
    """A single csv with columns id, sentence, sentiment (no validation or test file)."""
    rows = [{"id": f"r{i}", "sentence": r["text"], "sentiment": r["label"]} for i, r in enumerate(sentiment_rows(150, 4))]
    return write_csv(tmp_path / "reviews.csv", rows, ["id", "sentence", "sentiment"])


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    return result


def test_run_from_model_and_data_infers_columns_and_states_them(tiny_bert: Path, reviews: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "flags"
    result = invoke("run", "--model", str(tiny_bert), "--data", str(reviews), "--output", str(out), *FAST)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    data = record["config"]["data"]
    assert record["config"]["task"] == "text-classification"
    assert (data["text_column"], data["label_column"], data["label_names"]) == ("sentence", "sentiment",
                                                                               ["negative", "positive"])
    assert set(record["data"]["splits"]) == {"train", "validation", "test"}  # both carved out of the one file
    card = (out / "README.md").read_text()
    assert "## How this run was set up" in card
    assert "data.text\\_column: sentence (the only column of free text)" in card
    assert "data.label\\_column: sentiment (the only column with a few distinct values)" in card
    assert "task: text-classification" in card and "carved out of train" in card
    assert "## Examples from the test split" in card and "| negative |" in card
    assert "widget:" in card.split("---")[1]


def test_init_writes_a_config_that_check_accepts_and_run_reproduces(tiny_bert: Path, reviews: Path,
                                                                     tmp_path: Path) -> None:
    init = invoke("init", "--model", str(tiny_bert), "--data", str(reviews), "--output", str(tmp_path / "a"))
    assert init.exit_code == 0, init.output
    text = init.stdout
    assert "text_column: sentence" in text and "# inferred: the only column of free text" in text
    config = tmp_path / "elsewhere" / "config.yaml"  # absolute paths: works wherever it is saved
    config.parent.mkdir()
    config.write_text(text)
    from cardgen.config import load_config
    from cardgen.infer import infer_run

    inferred = infer_run(str(tiny_bert), str(reviews), output=str(tmp_path / "a"))
    assert load_config(config).to_dict() == load_config(data=inferred.raw).to_dict()

    check = invoke("check", str(config), "--no-estimate")
    assert check.exit_code == 0, check.output
    assert "Checked; nothing was written." in check.stdout and not (tmp_path / "a").exists()

    a = invoke("run", str(config), *FAST)
    b = invoke("run", "--model", str(tiny_bert), "--data", str(reviews), "--output", str(tmp_path / "b"), *FAST)
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ra, rb = (json.loads((tmp_path / n / "run.json").read_text()) for n in "ab")
    ra["config"]["output"]["dir"] = rb["config"]["output"]["dir"]
    assert ra["config"] == rb["config"]
    assert ra["data"]["splits"] == rb["data"]["splits"]
    assert ra["evaluation"]["metrics"] == rb["evaluation"]["metrics"]
    assert ra["evaluation"]["predictions"] == rb["evaluation"]["predictions"]


def test_split_files_beside_train_are_found(tiny_bert: Path, tiny_data: Path) -> None:
    from cardgen.infer import infer_run

    inferred = infer_run(str(tiny_bert), str(tiny_data / "train.jsonl"))
    data = inferred.raw["data"]
    assert Path(data["validation"]).name == "validation.jsonl" and Path(data["test"]).name == "test.jsonl"
    assert data["text_column"] == "text" and data["label_column"] == "label"
    assert any(n.startswith("data.test: test.jsonl (found beside train.jsonl)") for n in inferred.notes)
    folder = infer_run(str(tiny_bert), str(tiny_data))  # a folder of split files
    assert folder.raw["data"]["train"] == data["train"]


def test_two_text_columns_is_one_line_naming_the_flag(tiny_bert: Path, tmp_path: Path) -> None:
    rows = [{"title": f"{r['text']} title", "body": r["text"] + " and more", "label": r["label"]}
            for r in sentiment_rows(60, 2)]
    data = write_csv(tmp_path / "pairs.csv", rows, ["title", "body", "label"])
    for command in ("run", "init", "check"):
        result = invoke(command, "--model", str(tiny_bert), "--data", str(data), "--output", str(tmp_path / "o"))
        assert result.exit_code == 2, result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "Traceback" not in result.output
        assert "2 text-like columns (title, body)" in errors[0] and "--text-column NAME" in errors[0]
    assert not (tmp_path / "o").exists()
    named = invoke("init", "--model", str(tiny_bert), "--data", str(data), "--text-column", "body")
    assert named.exit_code == 0 and "text_column: body" in named.stdout


def test_causal_lm_is_inferred_and_labelled_data_for_it_is_ambiguous(tmp_path: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = sorted({w for r in sentiment_rows(40, 1) for w in r["text"].replace("!", " ").replace(".", " ").split()})
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<unk>", "<eos>", *words])}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(0)
    model_dir = tmp_path / "gpt"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(words) + 2, n_embd=16, n_layer=1, n_head=2,
                               n_positions=64)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    from cardgen.infer import infer_run

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(r["text"] for r in sentiment_rows(40, 1)) + "\n")
    inferred = infer_run(str(model_dir), str(texts))
    assert inferred.raw["task"] == "causal-lm" and inferred.raw["data"]["text_column"] == "text"
    assert "causal language model" in inferred.notes[0]
    labelled = write_jsonl(tmp_path / "labelled.jsonl", sentiment_rows(40, 1))
    result = invoke("init", "--model", str(model_dir), "--data", str(labelled))
    assert result.exit_code == 2
    assert "--task causal-lm" in result.stderr and "--task text-classification" in result.stderr
    ok = invoke("init", "--model", str(model_dir), "--data", str(labelled), "--task", "causal-lm")
    assert ok.exit_code == 0, ok.output
    assert "task: causal-lm" in ok.stdout and "text_column: text" in ok.stdout
    planned = invoke("check", "--model", str(model_dir), "--data", str(texts), "--output", str(tmp_path / "o"),
                     "--set", "data.max_length=32", "--json")
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    assert plan["task"] == "causal-lm" and plan["estimate"]["timed_steps"] == 3 and plan["total_steps"] >= 3
    assert not (tmp_path / "o").exists()


def test_saved_dataset_with_class_labels(tiny_bert: Path, tmp_path: Path) -> None:
    import datasets

    rows = sentiment_rows(80, 3)
    features = datasets.Features({"review": datasets.Value("string"),
                                  "stars": datasets.ClassLabel(names=["bad", "good"])})
    split = datasets.Dataset.from_dict({"review": [r["text"] for r in rows],
                                        "stars": [int(r["label"] == "positive") for r in rows]}, features=features)
    datasets.DatasetDict({"train": split, "dev": split.select(range(20))}).save_to_disk(str(tmp_path / "dd"))
    from cardgen.infer import infer_run

    inferred = infer_run(str(tiny_bert), str(tmp_path / "dd"))
    data = inferred.raw["data"]
    assert data["dataset"] == str((tmp_path / "dd").resolve()) and data["splits"] == {"validation": "dev"}
    assert (data["text_column"], data["label_column"], data["label_names"]) == ("review", "stars", ["bad", "good"])
    assert any("ClassLabel" in n for n in inferred.notes)


def test_flag_errors(tiny_bert: Path, reviews: Path, tmp_path: Path) -> None:
    cases = [
        (["run"], "Missing argument 'CONFIG' (or --model and --data"),
        (["run", "--model", str(tiny_bert)], "--model needs --data too"),
        (["run", str(reviews), "--model", str(tiny_bert), "--data", str(reviews)], "not both"),
        (["check", "--text-column", "x", str(tmp_path / "c.yaml")], "--text-column only applies"),
        (["init", "--model", str(tiny_bert), "--data", str(tmp_path / "missing.csv")], "does not exist"),
        (["init", "--model", str(tiny_bert), "--data", str(reviews), "--label-column", "stars"],
         "--label-column 'stars' is not a column"),
        (["init", "--model", str(tmp_path / "nomodel"), "--data", str(reviews)], "check --model"),
    ]
    for args, expect in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and expect in errors[0], (args, result.stderr)


def test_shell_completion_lists_the_commands() -> None:
    """Click's own completion (documented in README.md): what `eval "$(_CARDGEN_COMPLETE=bash_source cardgen)"`
    installs answers with cardgen's commands and options."""
    env = {**os.environ, "_CARDGEN_COMPLETE": "bash_complete", "COMP_WORDS": "cardgen ch", "COMP_CWORD": "1"}
    code = "from cardgen.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "plain,check" in proc.stdout.splitlines()
    env.update(COMP_WORDS="cardgen run --mo", COMP_CWORD="2")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "plain,--model" in proc.stdout.splitlines()
    source = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "_CARDGEN_COMPLETE": "bash_source"})
    assert "_cardgen_completion" in source.stdout and "complete " in source.stdout


def test_init_json(tiny_bert: Path, reviews: Path) -> None:
    result = invoke("init", "--model", str(tiny_bert), "--data", str(reviews), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["config"]["data"]["label_column"] == "sentiment"
    assert yaml.safe_dump(payload["config"])  # plain data


def test_every_command_that_prints_results_has_json(tiny_run: Path, tiny_bert: Path, tiny_data: Path,
                                                   tmp_path: Path) -> None:
    """`--json` on card, compare (`--json -`), lint, push, check, init and run: machine-readable stdout."""
    import shutil

    from cardgen.commands.bench import bench
    from cardgen.commands.card import card, lint, push
    from cardgen.commands.compare import compare
    from cardgen.commands.run import run
    from cardgen.commands.start import check, init

    for command in (run, check, init, card, lint, push, bench):
        assert "--json" in {opt for p in command.params for opt in p.opts}, command.name
    assert "--json" in {opt for p in compare.params for opt in p.opts}
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    rendered = invoke("card", str(copy), "--json")
    assert rendered.exit_code == 0, rendered.output
    assert json.loads(rendered.stdout)["card"] == str(copy / "README.md")
    compared = invoke("compare", str(tiny_bert), str(copy), "--data", str(tiny_data / "test.jsonl"),
                      "--train", str(tiny_data / "train.jsonl"), "--bootstrap", "100", "--json", "-")
    assert compared.exit_code == 0, compared.output
    payload = json.loads(compared.stdout)
    assert payload["num_examples"] == 64 and payload["task"] == "text-classification"
