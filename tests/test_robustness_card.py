"""Issue 13, config, data and card truthfulness: each reproduction of cases 6-10, 12-16 and 21 as a test.

Errors are ONE line ``Error: ... (hint: ...)``, exit 2, and leave inputs and outputs byte-identical; where the
fix is a behaviour (what the card says), the test renders a real card and reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import base_config, sentiment_rows, write_config, write_jsonl
from test_bad_inputs import assert_one_line_error, snapshot

from cardgen.cli import cli
from cardgen.record import load_record, save_record


@pytest.fixture()
def run_copy(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the finished tiny run (no weights), with the working directory in tmp_path."""
    monkeypatch.setenv("CARDGEN_DEBUG", "")
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "run"
    shutil.copytree(tiny_run, target, ignore=shutil.ignore_patterns("*.safetensors"))
    yield target


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_error(result: Result, expect: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.stdout == ""
    return assert_one_line_error(result.stderr, expect)


def config_file(tmp: Path, bert: Path, data: Path, **sections: Any) -> Path:
    return write_config(tmp / "config.yaml", base_config(bert, data, tmp / "out", **sections))


# ------------------------------------------------------------------------------------------ 6: missing labels


def _labelled_rows() -> list[dict[str, Any]]:
    rows = sentiment_rows(40, 1)
    rows[3]["label"] = ""
    rows[7]["label"] = None
    rows[9]["label"] = "   "
    return rows


@pytest.mark.parametrize("label_names", [None, ["negative", "positive"]], ids=["no-label-names", "label-names"])
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_missing_labels_are_an_error_naming_the_rows(tiny_bert: Path, tiny_data: Path, tmp_path: Path,
                                                     label_names: list[str] | None, fmt: str) -> None:
    rows = _labelled_rows()
    if fmt == "jsonl":
        train = write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    else:  # an empty CSV cell reads as NaN
        train = tmp_path / "data" / "train.csv"
        train.parent.mkdir()
        train.write_text("text,label\n" + "".join(f"{r['text']},{(r['label'] or '').strip()}\n" for r in rows))
    cfg = base_config(tiny_bert, tiny_data, tmp_path / "out")
    cfg["data"] = {"train": str(train), "max_length": 32, **({"label_names": label_names} if label_names else {})}
    path = write_config(tmp_path / "config.yaml", cfg)
    before = snapshot(tmp_path / "data")
    line = assert_error(invoke("run", path), "missing (blank or null) label(s)")
    assert "rows 4, 8, 10" in line and str(train) in line
    assert not (tmp_path / "out").exists() and snapshot(tmp_path / "data") == before


# ------------------------------------------------------------------------------- 7: what the split was for


@pytest.mark.parametrize(("split", "train", "says", "never"), [
    ("test", True, "held-out **test** split (64 examples, never used for model selection)", "optimistic"),
    ("validation", True, "Training also used this split to pick the best checkpoint", "never used for model selection"),
    ("train", True, "the data it was trained on", "never used for model selection"),
    ("validation", False, "held-out **validation** split (48 examples, never used for model selection)", "optimistic"),
], ids=["test", "validation", "train", "validation-no-training"])
def test_card_says_what_the_evaluation_split_was_used_for(tiny_bert: Path, tiny_data: Path, tmp_path: Path,
                                                          split: str, train: bool, says: str, never: str) -> None:
    path = config_file(tmp_path, tiny_bert, tiny_data, training={"num_epochs": 1, "seed": 7})
    args = ["run", path, "--set", f"evaluation.split={split}", *([] if train else ["--no-train"])]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    record = load_record(tmp_path / "out")
    assert record.evaluation is not None and record.evaluation.split == split
    summary = (tmp_path / "out" / "README.md").read_text().split("<!-- cardgen:end summary -->")[0]
    assert says in summary and never not in summary
    if split == "validation" and train:  # and lower down, consistently, the best epoch was chosen on it
        assert "best epoch by validation" in (tmp_path / "out" / "README.md").read_text()


# ------------------------------------------------------------------------------- 8: rendering is bounded


@pytest.mark.parametrize(("template", "expect"), [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "loop iterations"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}", "loop iterations"),
    ("{% for i in [1] recursive %}{% for j in range(100000) %}{% endfor %}{{ loop(range(100000)) }}{% endfor %}",
     "loop iterations"),
    ("{% for i in range(5000) %}{{ 'x' * 999999 }}{% endfor %}", "characters"),
    ("{{ 'x'.ljust(10 ** 10) }}", "width"),
    ("{{ 'x' | center(10 ** 10) }}", "width"),
    ("{{ '%1000000000d' % 1 }}", "format width"),
    ("{{ '{:>1000000000}'.format(1) }}", "format width"),
    ("{{ ('x' * 999999) | replace('', 'y' * 999999) }}", "replace"),
], ids=["nested-loops", "nested-loops-printing", "recursive-loop", "output-size", "ljust", "center-filter",
        "percent-width", "format-width", "replace"])
def test_template_bombs_fail_fast_with_one_line(run_copy: Path, tmp_path: Path, template: str, expect: str) -> None:
    tpl = tmp_path / "bomb.md.j2"
    tpl.write_text(template)
    before = snapshot(run_copy)
    start = time.monotonic()
    line = assert_error(invoke("card", run_copy, "--template", tpl, "-o", tmp_path / "card.md"), expect)
    assert time.monotonic() - start < 15, "the sandbox let the template run on"
    assert "bomb.md.j2" in line
    assert not (tmp_path / "card.md").exists() and snapshot(run_copy) == before


def test_template_wall_time_is_bounded(run_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cardgen.card.render as render

    monkeypatch.setattr(render, "MAX_RENDER_SECONDS", 0.5)  # the bound itself is real; only its size is lowered
    tpl = tmp_path / "slow.md.j2"
    # few iterations, no output, but each builds and measures a megabyte: slow without tripping another bound
    tpl.write_text("{% for i in range(100000) %}{% set n = ('x' * 999999) | length %}{% endfor %}")
    start = time.monotonic()
    assert_error(invoke("card", run_copy, "--template", tpl, "-o", tmp_path / "card.md"), "longer than 0.5 s")
    assert time.monotonic() - start < 10
    assert not (tmp_path / "card.md").exists()


def test_the_builtin_card_renders_within_the_bounds(run_copy: Path, tmp_path: Path) -> None:
    assert invoke("card", run_copy, "-o", tmp_path / "card.md").exit_code == 0
    loops = tmp_path / "loops.md.j2"
    loops.write_text("{% for r in results %}{{ r[0] }}{{ ', ' if not loop.last }}{% endfor %} ({{ splits | length }})"
                     "{% for s in splits %}{% for l in s.labels.split(', ') %}.{% endfor %}{% endfor %}\n")
    assert invoke("card", run_copy, "--template", loops, "-o", tmp_path / "loops.md").exit_code == 0
    assert (tmp_path / "loops.md").read_text().split("---\n")[-1].lstrip().startswith("Accuracy, ")


# ------------------------------------------------------------------------- 9: a hand-written README.md


HAND_WRITTEN = "# My model\n\nWritten by hand over a week. Please keep.\n"


def test_card_refuses_to_replace_a_hand_written_readme(run_copy: Path, tmp_path: Path) -> None:
    (run_copy / "README.md").write_text(HAND_WRITTEN)
    before = snapshot(run_copy)
    line = assert_error(invoke("card", run_copy), "no cardgen sections")
    assert "--overwrite-card" in line and snapshot(run_copy) == before

    other = tmp_path / "notes.md"  # -o FILE: the same check
    other.write_text(HAND_WRITTEN)
    assert_error(invoke("card", run_copy, "-o", other), "no cardgen sections")
    assert other.read_text() == HAND_WRITTEN and snapshot(run_copy) == before

    assert invoke("card", run_copy, "--overwrite-card").exit_code == 0
    assert "<!-- cardgen:begin summary -->" in (run_copy / "README.md").read_text()
    assert invoke("card", run_copy, "-o", other, "--overwrite-card").exit_code == 0
    assert "Written by hand" not in other.read_text()


def test_card_still_updates_its_own_cards(run_copy: Path, tmp_path: Path) -> None:
    """cardgen's own cards are merged as before: with markers, or from a user template (the "cardgen" tag)."""
    assert invoke("card", run_copy).exit_code == 0
    tpl = tmp_path / "plain.md.j2"
    tpl.write_text("# {{ model_name }}, no markers\n")
    out = tmp_path / "plain.md"
    assert invoke("card", run_copy, "--template", tpl, "-o", out).exit_code == 0
    assert invoke("card", run_copy, "--template", tpl, "-o", out).exit_code == 0
    assert "no markers" in out.read_text()


def test_run_overwrite_refuses_a_hand_written_readme_before_training(tiny_bert: Path, tiny_data: Path,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text(HAND_WRITTEN)
    (out / "notes.txt").write_text("mine\n")
    path = config_file(tmp_path, tiny_bert, tiny_data, training={"num_epochs": 1})
    before = snapshot(out)
    start = time.monotonic()
    line = assert_error(invoke("run", path, "--overwrite"), "no cardgen sections")
    assert "--overwrite-card" in line
    assert snapshot(out) == before, "the run wrote into the output directory"
    assert time.monotonic() - start < 5, "the refusal came after the slow stages"

    result = invoke("run", path, "--overwrite", "--overwrite-card")
    assert result.exit_code == 0, result.output
    assert "<!-- cardgen:begin summary -->" in (out / "README.md").read_text()
    assert load_record(out).config["output"]["overwrite_card"] is True


# ---------------------------------------------------------------------- 10: empty and incomplete configs


@pytest.mark.parametrize(("text", "expect"), [
    ("", "is empty"),
    ("# nothing here yet\n", "is empty"),
    ("task: text-classification\n", "the config has no `model.name_or_path`"),
    ("model: {bert}\n", "the config has no `data.train`"),
    ("model: {bert}\ndata:\n  name: my data\n", "the config has no `data.train`"),
    ("model: {bert}\ndata: {{train: {data}/train.jsonl, label_names: [a, a]}}\n", "`data.label_names`"),
], ids=["empty", "comment-only", "only-task", "no-data", "data-without-files", "data-checked-too"])
def test_empty_and_incomplete_configs(tiny_bert: Path, tiny_data: Path, tmp_path: Path, text: str, expect: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text.format(bert=tiny_bert, data=tiny_data))
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)  # the default output.dir is relative to the working directory
    assert_error(invoke("run", path), expect)
    assert snapshot(tmp_path) == before


def test_defaults_of_left_out_sections_are_checked() -> None:
    from cardgen.config import load_config
    from cardgen.errors import ConfigError

    with pytest.raises(ConfigError, match="the config is empty"):
        load_config(data={})
    with pytest.raises(ConfigError, match=r"the config has no `model\.name_or_path`"):
        load_config(data={"data": {"train": "x.jsonl"}})
    with pytest.raises(ConfigError, match=r"the config has no `data\.train`"):
        load_config(overrides=["model.name_or_path=x"])


# -------------------------------------------------------------------------------- 12: duplicate YAML keys


def test_duplicate_sections_and_keys_name_both_lines(tiny_bert: Path, tiny_data: Path, tmp_path: Path) -> None:
    good = yaml.safe_dump(base_config(tiny_bert, tiny_data, tmp_path / "out"), sort_keys=False)
    path = tmp_path / "config.yaml"
    lines = good.splitlines()
    first = next(i for i, line in enumerate(lines) if line == "training:") + 1
    path.write_text(good + "training:\n  num_epochs: 9\n  train_batch_size: 2\n")
    second = len(lines) + 1
    line = assert_error(invoke("run", path), "`training` appears twice")
    assert f"line {first} and on line {second}" in line and str(path) in line

    path.write_text("model:\n  name_or_path: x\n  revision: main\n  name_or_path: y\n")
    assert_error(invoke("run", path), "`name_or_path` appears twice, on line 2 and on line 4")
    assert not (tmp_path / "out").exists()


def test_yaml_merge_keys_are_not_duplicates(tiny_bert: Path, tiny_data: Path, tmp_path: Path) -> None:
    from cardgen.config import load_config

    text = yaml.safe_dump(base_config(tiny_bert, tiny_data, tmp_path / "out"), sort_keys=False)
    path = tmp_path / "c.yaml"
    path.write_text(text + "qa: &qa\n  n_best: 5\nlm:\n  <<: {max_new_tokens: 7}\n  mask_seed: 3\n")
    cfg = load_config(path)
    assert cfg.qa.n_best == 5 and cfg.lm.max_new_tokens == 7 and cfg.lm.mask_seed == 3


# --------------------------------------------------------- 13: config prose inside markers, facts follow the record


def test_card_prose_follows_the_config_and_facts_follow_the_record(run_copy: Path) -> None:
    card = run_copy / "README.md"
    text = card.read_text()
    todo = next(line for line in text.splitlines() if line.startswith("> TODO (author): who should use"))
    card.write_text(text.replace(todo, "Written by a person: for tiny demos only."))
    assert "with inputs cut to 32 tokens" in text

    record = load_record(run_copy)
    record.config["card"]["description"] = "First description from the config."
    record.data.max_length = 16
    save_record(record, run_copy / "run.json")
    assert invoke("card", run_copy).exit_code == 0
    merged = card.read_text()
    assert "First description from the config." in merged
    assert "with inputs cut to 16 tokens" in merged and "cut to 32 tokens" not in merged
    assert "Written by a person: for tiny demos only." in merged

    record.config["card"]["description"] = "Second description."
    record.config["card"]["limitations"] = "Fails on sarcasm."
    save_record(record, run_copy / "run.json")
    assert invoke("card", run_copy).exit_code == 0
    again = card.read_text()
    assert "Second description." in again and "First description" not in again
    assert "Fails on sarcasm." in again and "Written by a person: for tiny demos only." in again
    assert again.count("## Model description") == 1


# ---------------------------------------------------------------------------- 14: control characters


NASTY = "bad \x00 \x1b[31mred\x1b[0m \u202egnp.exe \x07 \x7f \x9b"


def test_control_characters_from_data_are_escaped_and_linted(run_copy: Path, tmp_path: Path) -> None:
    from cardgen.card.lint import lint_card

    record = load_record(run_copy)
    record.data.label_names = [f"neg{NASTY}", "positive"]
    split = record.data.splits["test"]
    split.label_distribution = {f"neg{NASTY}": 33, "positive": 31}
    record.data.report = {"duplicates": {"train": {"rows": 3, "duplicate_rows": 1, "examples": [NASTY, "ok 👍🏽 👨‍👩‍👧"]}},
                          "overlap": []}
    save_record(record, run_copy / "run.json")
    assert invoke("card", run_copy).exit_code == 0
    raw = (run_copy / "README.md").read_bytes()
    for char in ("\x00", "\x1b", "\u202e", "\x07", "\x7f", "\x9b"):
        assert char.encode() not in raw, repr(char)
    text = raw.decode()
    assert "\\\\x1b\\[31mred" in text and "\\\\u202egnp.exe" in text  # visible as \x1b[31mred, \u202egnp.exe
    assert "👍🏽 👨‍👩‍👧" in text  # emoji (with joiners) are not control characters
    assert "control-character" not in {f.code for f in lint_card(run_copy).findings}

    raw_card = tmp_path / "raw.md"
    raw_card.write_text((run_copy / "README.md").read_text() + f"\nQuoted raw: {NASTY}\n")
    found = [f for f in lint_card(raw_card).problems if f.code == "control-character"]
    assert len(found) == 1 and found[0].line == raw_card.read_text().split("\n").index(f"Quoted raw: {NASTY}") + 1
    for code in ("U+0000", "U+001B", "U+202E"):
        assert code in found[0].message
    result = invoke("lint", raw_card)
    assert result.exit_code != 0 and "U+202E" in result.output


# ------------------------------------------------------------------------- 15: JSON that is no run record


@pytest.mark.parametrize(("edit", "expect"), [
    (lambda r: [r], "it holds a JSON list"),
    (lambda r: {k: v for k, v in r.items() if k != "data"}, "`data` is missing"),
    (lambda r: {**r, "data": ["x"]}, "`data` is missing or not an object"),
    (lambda r: {**r, "model": {"task": "text-classification"}}, "TypeError"),
    (lambda r: "run", "it holds a JSON str"),
], ids=["list", "no-data", "data-not-object", "model-incomplete", "string"])
def test_card_on_json_that_is_no_run_record(run_copy: Path, edit: Any, expect: str) -> None:
    record = json.loads((run_copy / "run.json").read_text())
    (run_copy / "run.json").write_text(json.dumps(edit(record)))
    before = snapshot(run_copy)
    line = assert_error(invoke("card", run_copy), expect)
    assert f"{run_copy / 'run.json'} is not a cardgen run record (schema 1.0)" in line
    assert snapshot(run_copy) == before


# --------------------------------------------------------------- 16: the card does not depend on the cwd


def test_card_bytes_do_not_depend_on_the_working_directory(run_copy: Path, tmp_path: Path, tiny_data: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    record = load_record(run_copy)
    record.config["card"]["base_model"] = None  # the local base model path is shown too
    save_record(record, run_copy / "run.json")
    cards = []
    for i, cwd in enumerate([tiny_data.parent, tiny_data, run_copy, Path("/")]):
        monkeypatch.chdir(cwd)
        assert invoke("card", run_copy, "-o", tmp_path / f"card{i}.md").exit_code == 0
        cards.append((tmp_path / f"card{i}.md").read_bytes())
    assert all(c == cards[0] for c in cards[1:])
    text = cards[0].decode()
    out = Path(record.config["output"]["dir"])
    rel = Path(os.path.relpath(tiny_data / "train.jsonl", out)).as_posix()
    assert f"| train | 160 | {rel} |" in text


# -------------------------------------------------------------- 21: no absolute local path of the base model


def test_card_hides_the_local_base_model_path_like_the_pushed_run_json(run_copy: Path, tmp_path: Path) -> None:
    from cardgen.hub.payload import public_run_json

    model = tmp_path / "venv" / "lib" / "python3.12" / "site-packages" / "somepkg" / "model"
    model.mkdir(parents=True)
    record = load_record(run_copy)
    record.config["card"]["base_model"] = None
    record.model.base_model = str(model)
    save_record(record, run_copy / "run.json")
    assert invoke("card", run_copy).exit_code == 0
    text = (run_copy / "README.md").read_text()
    assert str(tmp_path) not in text
    assert "fine-tuned version of `site-packages/somepkg/model`" in text
    public = json.loads(public_run_json((run_copy / "run.json").read_bytes(), run_copy))
    assert public["model"]["base_model"] == "site-packages/somepkg/model"

    home = Path.home() / "models" / "bert"
    record.model.base_model = str(home)
    save_record(record, run_copy / "run.json")
    assert invoke("card", run_copy).exit_code == 0
    text = (run_copy / "README.md").read_text()
    assert str(home) not in text and "~/models/bert" in text


@pytest.mark.parametrize("name", ["/home/alice/models/bert", "~/bert", "./bert", "C:\\models\\bert",
                                  "lib/python3.12/site-packages/pkg/model", ".../models/bert"])
def test_lint_flags_a_local_path_as_base_model(tmp_path: Path, name: str) -> None:
    from cardgen.card.lint import lint_card

    card = tmp_path / "README.md"
    card.write_text(f"---\nlicense: mit\nbase_model: {json.dumps(name)}\n---\n# x\n")
    assert [f.code for f in lint_card(card).problems] == ["base-model-local"]
    card.write_text("---\nlicense: mit\nbase_model: org/bert-base\n---\n# x\n")
    assert "base-model-local" not in [f.code for f in lint_card(card).findings]
