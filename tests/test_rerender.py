"""Re-rendering keeps human edits; the data report and the leakage warning in the record and the card."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cardgen.cli import cli
from cardgen.data_report import data_report, normalize_text
from cardgen.record import load_record, save_record


@pytest.fixture()
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(tiny_run, target, ignore=shutil.ignore_patterns("*.safetensors"))
    return target


def test_rerender_keeps_human_text_and_updates_generated_sections(run_copy: Path) -> None:
    card = run_copy / "README.md"
    text = card.read_text()
    todo = next(line for line in text.splitlines() if line.startswith("> TODO (author): say what this model does"))
    human_description = "Written by a person: this model sorts tiny movie reviews by mood."
    text = text.replace(todo, human_description)
    text += "\n## Notes from the author\n\nKeep this paragraph, please.\n"
    # an edit inside a generated section is cardgen's to replace
    assert "## Training procedure\n" in text
    text = text.replace("## Training procedure\n", "## Training procedure\n\nHAND EDIT INSIDE MARKERS\n")
    card.write_text(text)

    record = load_record(run_copy)
    record.config["card"]["model_name"] = "renamed-sentiment"
    record.warnings.append("a warning added after the run")
    save_record(record, run_copy / "run.json")

    result = CliRunner().invoke(cli, ["card", str(run_copy)])
    assert result.exit_code == 0, result.output
    merged = card.read_text()
    assert human_description in merged and todo not in merged
    assert "## Notes from the author\n\nKeep this paragraph, please.\n" in merged
    assert "HAND EDIT INSIDE MARKERS" not in merged
    assert "# renamed-sentiment\n" in merged and "> **Warning:** a warning added after the run" in merged
    assert "- name: renamed-sentiment" in merged.split("---")[1]  # model-index in the front matter too
    # rendering again changes nothing
    assert CliRunner().invoke(cli, ["card", str(run_copy)]).exit_code == 0
    assert card.read_text() == merged


def test_rerender_keeps_human_front_matter_keys(run_copy: Path) -> None:
    card = run_copy / "README.md"
    text = card.read_text()
    card.write_text(text.replace("---\n", "---\nthumbnail: https://example.com/t.png\n", 1))
    assert CliRunner().invoke(cli, ["card", str(run_copy)]).exit_code == 0
    assert "thumbnail: https://example.com/t.png" in card.read_text()


def frames(train: list[tuple[str, int]], test: list[tuple[str, int]]) -> dict[str, pd.DataFrame]:
    return {name: pd.DataFrame({"text": [t for t, _ in rows], "label": [lab for _, lab in rows]})
            for name, rows in (("train", train), ("test", test))}


def test_rerender_uses_the_runs_own_template(run_copy: Path, tmp_path: Path) -> None:
    template = tmp_path / "mine.md.j2"
    template.write_text("# {{ model_name }} by my template\n")
    record = load_record(run_copy)
    record.config["card"]["template"] = str(template)
    save_record(record, run_copy / "run.json")
    card = run_copy / "README.md"
    card.unlink()
    assert CliRunner().invoke(cli, ["card", str(run_copy)]).exit_code == 0
    assert "by my template" in card.read_text()
    assert CliRunner().invoke(cli, ["card", str(run_copy), "--builtin", "-o", str(tmp_path / "b.md")]).exit_code == 0
    assert "by my template" not in (tmp_path / "b.md").read_text()
    template.unlink()  # gone: one clear line, the card untouched
    before = card.read_text()
    result = CliRunner().invoke(cli, ["card", str(run_copy)])
    assert result.exit_code == 2 and "no longer exists" in result.output and "--builtin" in result.output
    assert card.read_text() == before


def test_data_report_counts_duplicates_and_overlap() -> None:
    report = data_report(frames(
        train=[("Good film", 1), ("good  film", 1), ("Bad film", 0), ("Bad film", 1), ("fine", 1), ("fine", 1)],
        test=[("Bad film", 0), ("BAD FILM ", 0), ("new text", 1), ("Fine", 1)],
    ), ["text"], "label", ["negative", "positive"])
    assert report["split_sizes"] == {"train": 6, "test": 4}
    assert report["label_distribution"]["train"] == {"negative": 1, "positive": 5}
    dup = report["duplicates"]["train"]
    assert dup["duplicate_rows"] == 2  # "Bad film" and "fine" repeated exactly
    assert dup["duplicate_rows_normalized"] == 3  # plus "good  film" ~ "Good film"
    assert dup["conflicting_labels"] == 1  # "Bad film" is labelled both ways
    (overlap,) = report["overlap"]
    assert overlap["splits"] == ["train", "test"] and overlap["rows"] == 4
    assert overlap["exact"] == 1 and overlap["normalized"] == 3  # "Bad film"; "BAD FILM ", "Fine" after normalising
    assert overlap["fraction"] == 0.75
    assert report["leakage"] == {"any": True, "test_in_train": 3}
    assert normalize_text("  A\tB  c ") == "a b c"


def test_pipeline_records_the_data_report(tiny_run: Path) -> None:
    record = load_record(tiny_run)
    report = record.data.report
    assert report["split_sizes"] == {"train": 160, "validation": 48, "test": 64}
    assert report["token_length"]["train"] == record.data.splits["train"].token_length
    assert set(report["duplicates"]) == {"train", "validation", "test"}
    assert [o["splits"] for o in report["overlap"]] == [["train", "test"], ["train", "validation"],
                                                        ["validation", "test"]]
    card = (tiny_run / "README.md").read_text()
    assert "## Data checks" in card and "| train → test | 64 |" in card


def test_leakage_warning_at_the_top_of_the_card(tiny_run: Path, tiny_data: Path, make_config, tmp_path: Path) -> None:
    """Evaluate the trained model on data that repeats training examples: the card warns before anything else."""
    rows = (tiny_data / "train.jsonl").read_text().splitlines()
    leaky = tmp_path / "leaky.jsonl"
    clean = (tiny_data / "test.jsonl").read_text().splitlines()
    shouted = rows[1].replace('"text": "', '"text": "  ').upper().replace('"TEXT"', '"text"').replace(
        '"LABEL"', '"label"').replace('"POSITIVE"', '"positive"').replace('"NEGATIVE"', '"negative"')
    leaky.write_text("\n".join([rows[0], shouted] + clean[:30]) + "\n")
    cfg = make_config(model={"name_or_path": str(tiny_run)}, training=None,
                      data={"test": str(leaky), "validation": None})
    out = tmp_path / "leak"
    result = CliRunner().invoke(cli, ["run", str(cfg), "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = load_record(out).data.report
    test_overlap = next(o for o in report["overlap"] if o["splits"] == ["train", "test"])
    assert (test_overlap["exact"], test_overlap["normalized"], test_overlap["rows"]) == (1, 2, 32)
    card = (out / "README.md").read_text()
    body = card.split("---", 2)[2]
    warning = body.index("**Warning: training data leaks into the evaluation data.**")
    assert warning < body.index("This card documents")
    assert "2 of 32 test examples (6.2%) also appear in the training data (1 exactly, 1 more after normalising" \
        in card
    # the clean run has no such warning
    assert "leaks into the evaluation data" not in (tiny_run / "README.md").read_text()
