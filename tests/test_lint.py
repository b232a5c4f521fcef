"""`cardgen lint`: offline checks of a model card, exit codes and --json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cardgen.card.lint import lint_card
from cardgen.cli import cli

GOOD_META = """---
license: apache-2.0
base_model: test-org/tiny-bert
model-index:
- name: m
  results:
  - task:
      type: text-classification
    dataset:
      type: tiny
      name: Tiny
    metrics:
    - type: accuracy
      value: 0.9
---
"""


def write(tmp_path: Path, text: str, name: str = "README.md") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def codes(path: Path, strict: bool = False) -> list[str]:
    return [f.code for f in lint_card(path, strict=strict).problems]


def test_generated_card_passes_with_placeholder_warnings(tiny_run: Path) -> None:
    result = lint_card(tiny_run / "README.md")
    assert result.ok, [f.message for f in result.problems]
    assert {f.code for f in result.warnings} == {"placeholder"}  # the TODO (author) guidance
    assert all(f.line for f in result.warnings)


def test_cli_exit_codes_and_strict(tiny_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["lint", str(tiny_run / "README.md")])
    assert ok.exit_code == 0, ok.output
    assert "OK (0 problems" in ok.output and "TODO (author)" in ok.output
    strict = runner.invoke(cli, ["lint", str(tiny_run / "README.md"), "--strict"])
    assert strict.exit_code == 1 and "FAILED" in strict.output
    missing = runner.invoke(cli, ["lint", str(tmp_path / "nope.md")])
    assert missing.exit_code == 2 and "no model card" in missing.output


def test_cli_json_output(tiny_run: Path) -> None:
    result = CliRunner().invoke(cli, ["lint", str(tiny_run / "README.md"), "--json", "--strict"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["strict"] is True and data["warnings"] == []
    assert data["problems"] and {p["code"] for p in data["problems"]} == {"placeholder"}
    assert set(data["problems"][0]) == {"level", "code", "message", "line"}


def test_a_clean_card_passes_strict(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_META + "# m\n\nA model.\n\n![remote](https://example.com/x.png)\n")
    result = lint_card(path, strict=True)
    assert result.ok and result.findings == []


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "---\nlicense: [apache\nbase_model: x\n---\n# m\n")
    result = lint_card(path)
    assert [f.code for f in result.problems] == ["yaml-invalid"]
    assert result.problems[0].line is not None


def test_no_front_matter(tmp_path: Path) -> None:
    assert codes(write(tmp_path, "# just text\n")) == ["no-front-matter"]


def test_nulls_license_and_base_model(tmp_path: Path) -> None:
    path = write(tmp_path, "---\nlicense:\ntags:\n- a\n- null\n---\n# m\n")
    found = lint_card(path)
    assert [f.code for f in found.problems].count("null-value") == 2
    messages = " ".join(f.message for f in found.problems)
    assert "`license`" in messages and "`tags[1]`" in messages
    assert {"no-license", "no-base-model"} <= {f.code for f in found.problems}
    assert "no-results" in {f.code for f in found.warnings}


@pytest.mark.parametrize(("edit", "where"), [
    (("      type: text-classification\n", ""), "task.type"),
    (("      type: tiny\n", ""), "dataset.type"),
    (("      name: Tiny\n", ""), "dataset.name"),
    (("      value: 0.9\n", ""), "metrics[0].value"),
    (("    - type: accuracy\n      value: 0.9\n", "    - value: 0.9\n"), "metrics[0].type"),
    (("- name: m\n", "- results_typo: 1\n"), "name"),
])
def test_model_index_required_fields(tmp_path: Path, edit: tuple[str, str], where: str) -> None:
    old, new = edit
    assert old in GOOD_META
    path = write(tmp_path, GOOD_META.replace(old, new, 1) + "# m\n")
    problems = lint_card(path).problems
    assert any(f.code == "model-index" and where in f.message for f in problems), [f.message for f in problems]


@pytest.mark.parametrize("placeholder", ["TODO (author): describe it", "[More Information Needed]",
                                         "More information needed", "FIXME later", "{{ model_name }}"])
def test_placeholders_are_warnings(tmp_path: Path, placeholder: str) -> None:
    path = write(tmp_path, GOOD_META + f"# m\n\n{placeholder}\n")
    result = lint_card(path)
    assert result.ok and [f.code for f in result.warnings] == ["placeholder"]
    assert result.warnings[0].line == GOOD_META.count("\n") + 3
    assert codes(path, strict=True) == ["placeholder"]


def test_placeholders_in_comments_and_code_are_ignored(tmp_path: Path) -> None:
    body = "# m\n<!-- TODO: hidden -->\n<!--\nTODO also hidden\n-->\n```\n{{ jinja }} TODO\n```\n"
    assert lint_card(write(tmp_path, GOOD_META + body), strict=True).findings == []


def test_images_must_exist(tmp_path: Path) -> None:
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "ok.png").write_bytes(b"\x89PNG")
    body = ("# m\n\n![fine](plots/ok.png)\n![gone](missing.png)\n<img src=\"also-missing.png\" width=10>\n"
            "![web](https://huggingface.co/x.png)\n")
    result = lint_card(write(tmp_path, GOOD_META + body))
    missing = [f for f in result.problems if f.code == "image-missing"]
    assert [f.message for f in missing] == ["image missing.png does not exist", "image also-missing.png does not exist"]
    assert [f.line for f in missing] == [GOOD_META.count("\n") + 4, GOOD_META.count("\n") + 5]


def test_plots_of_a_run_are_checked(tiny_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("*.safetensors"))
    (copy / "confusion_matrix.png").unlink()
    assert codes(copy) == ["image-missing"]  # a directory means its README.md


def test_unbalanced_markers(tmp_path: Path) -> None:
    body = "# m\n<!-- cardgen:begin results -->\nnumbers\n"
    result = lint_card(write(tmp_path, GOOD_META + body))
    assert [f.code for f in result.problems] == ["markers"]
    assert "never ends" in result.problems[0].message
