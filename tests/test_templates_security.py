"""Templates from strangers and data from strangers: a hostile card template executes nothing and fails with a
clear template error; rows of data cannot inject HTML, scripts or Markdown links into the rendered card."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import base_config, sentiment_rows, write_config, write_jsonl

from cardgen.card.format import md_escape
from cardgen.cli import cli


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """One-line errors, even after an in-process `--debug` elsewhere set CARDGEN_DEBUG in os.environ."""
    monkeypatch.setenv("CARDGEN_DEBUG", "")


# Each template tries to create MARKER (a path filled in per test); none may succeed.
HOSTILE = {
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "subclasses-popen": "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'Popen' %}"
                        "{{ c(['touch', MARKER]) }}{% endif %}{% endfor %}",
    "catch-warnings-import": "{% for c in [].__class__.__base__.__subclasses__() %}{% if c.__name__ == "
                             "'catch_warnings' %}{{ c()._module.__builtins__['__import__']('os').system('touch ' "
                             "~ MARKER) }}{% endif %}{% endfor %}",
    "cycler-globals-os": "{{ cycler.__init__.__globals__.os.popen('touch ' ~ MARKER).read() }}",
    "joiner-globals-os": "{{ joiner.__init__.__globals__.os.system('touch ' ~ MARKER) }}",
    "namespace-globals": "{{ namespace.__init__.__globals__.os.system('touch ' ~ MARKER) }}",
    "lipsum-globals": "{{ lipsum.__globals__['os'].system('touch ' ~ MARKER) }}",
    "self-builtins-open": "{{ self.__init__.__globals__.__builtins__.open(MARKER, 'w').write('x') }}",
    "template-reference-context": "{{ self._TemplateReference__context.cycler.__init__.__globals__.os"
                                  ".system('touch ' ~ MARKER) }}",
    "attr-filter": "{{ (''|attr('__class__')|attr('__mro__'))[1] }}",
    "format-string": "{{ '{0.__init__.__globals__[os]}'.format(cycler) }}",
    "format-map": "{{ '{x.__class__}'.format_map({'x': cycler}) }}",
    "context-object-globals": "{{ training.__class__.__init__.__globals__ }}",
    "context-object-dict": "{{ hardware.__class__.__dict__ }}",
    "mutate-context": "{{ results.append(1) }}{{ hardware.update({'device': 'pwned'}) }}",
    "undefined-request": "{{ request.application.__globals__.__builtins__.open(MARKER, 'w') }}",
    "undefined-config": "{{ config.items() }}",
    "include-passwd": "{% include '/etc/passwd' %}",
    "include-traversal": "{% include '../../../../../../etc/passwd' %}",
    "import-os": "{% import 'os' as os %}{{ os.system('touch ' ~ MARKER) }}",
    "memory-bomb-repeat": "{{ 'x' * 1000000000 }}",
    "cpu-bomb-power": "{{ 10 ** (10 ** 10) }}",
    "cpu-bomb-power-chain": "{{ (((10 ** 60) ** 60) ** 60) ** 60 }}",
    "range-bomb": "{{ range(1000000000) | list | length }}",
    "recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
}


@pytest.fixture()
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(tiny_run, target)
    return target


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, stderr
    assert "(hint: " in lines[0]
    return lines[0]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_template_fails_clearly_and_executes_nothing(name: str, run_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    template = tmp_path / "hostile.md.j2"
    template.write_text("# {{ model_name }}\n" + HOSTILE[name].replace("MARKER", repr(str(marker))) + "\n")
    target = tmp_path / "card.md"
    readme = (run_copy / "README.md").read_bytes()
    result = CliRunner().invoke(cli, ["card", str(run_copy), "--template", str(template), "--output", str(target)])
    assert result.exit_code == 2, (result.output, result.exception)
    line = one_error_line(result.stderr)
    assert line.startswith("Error: template "), line
    assert not marker.exists(), "the template ran code"
    assert not target.exists()
    assert (run_copy / "README.md").read_bytes() == readme


def test_template_errors_name_the_problem(run_copy: Path, tmp_path: Path) -> None:
    cases = {
        "{{ ''.__class__ }}": "unsafe",
        "{{ 'x' * 1000000000 }}": "unsafe",
        "{{ nothing_here }}": "'nothing_here' is undefined",
        "line 1\nline 2\n{% if %}\n": "syntax error on line 3",
    }
    for text, expected in cases.items():
        template = tmp_path / "t.md.j2"
        template.write_text(text)
        result = CliRunner().invoke(cli, ["card", str(run_copy), "--template", str(template), "-o",
                                          str(tmp_path / "x.md")])
        assert result.exit_code == 2
        assert expected in one_error_line(result.stderr), (text, result.stderr)


def test_benign_template_features_still_work(run_copy: Path, tmp_path: Path) -> None:
    template = tmp_path / "ok.md.j2"
    template.write_text("{% set c = cycler('a', 'b') %}{% for n, v in results %}{{ c.next() }}:{{ n }}={{ v }}\n"
                        "{% endfor %}{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ range(3) | list }}\n"
                        "{% include 'model_card.md.j2' %}")
    out = tmp_path / "ok.md"
    result = CliRunner().invoke(cli, ["card", str(run_copy), "--template", str(template), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "a:Accuracy=" in text and "ababab 1024 [0, 1, 2]" in text and "## Training procedure" in text


def test_hostile_template_in_a_run_config_keeps_the_run(tiny_bert: Path, tiny_data: Path, tmp_path: Path) -> None:
    """A template named in the config is parsed before any work; one that fails only when rendered (here: an
    unsafe attribute) must not cost the run: run.json and a built-in card are written, then the error."""
    marker = tmp_path / "PWNED"
    template = tmp_path / "hostile.md.j2"
    template.write_text(HOSTILE["cycler-globals-os"].replace("MARKER", repr(str(marker))))
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "c.yaml", base_config(tiny_bert, tiny_data, out, card={"template": str(template)},
                                                        training=None))
    result = CliRunner().invoke(cli, ["run", str(cfg), "-q"])
    assert result.exit_code == 2, result.output
    line = one_error_line(result.stderr)
    assert "unsafe" in line and "cardgen card" in line
    assert not marker.exists()
    assert json.loads((out / "run.json").read_text())["status"] == "completed"
    assert "## Framework versions" in (out / "README.md").read_text()


INJECTIONS = [
    "<script>alert('label')</script>",
    "[click me](javascript:alert(1))",
    "<img src=x onerror=alert(1)>",
]


def test_data_rows_cannot_inject_html_or_links_into_the_card(tiny_bert: Path, tmp_path: Path) -> None:
    """Label names come from data rows and appear in the card; so do file names and sources. None may inject."""
    data = tmp_path / "data"
    rows = sentiment_rows(40, 9)
    for i, row in enumerate(rows):
        row["label"] = INJECTIONS[i % 3]
    rows[0]["text"] = "<script>alert('text')</script> | col | ![img](http://evil.example/x.png)"
    write_jsonl(data / "<b>evil</b>.jsonl", rows)
    out = tmp_path / "out"
    cfg = base_config(tiny_bert, data, out, training=None)
    cfg["data"] = {"train": str(data / "<b>evil</b>.jsonl"), "max_length": 32}
    cfg["card"] = {"model_name": "tiny"}
    result = CliRunner().invoke(cli, ["run", str(write_config(tmp_path / "c.yaml", cfg)), "-q"])
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    body = card.split("\n---\n", 1)[1]
    for raw in ("<script", "<img", "<b>"):
        assert raw not in body, raw
    assert not re.search(r"(?<!\\)\]\((javascript|http://evil)", body), "a link or image from the data survived"
    assert "&lt;script&gt;" in body  # shown, escaped, not dropped
    # user templates get the same escaped values
    template = tmp_path / "labels.md.j2"
    template.write_text("{{ label_names | join(' / ') }}\n{% for s in splits %}{{ s.source }}\n{% endfor %}")
    result = CliRunner().invoke(cli, ["card", str(out), "--template", str(template), "-o", str(tmp_path / "l.md")])
    assert result.exit_code == 0, result.output
    rendered = (tmp_path / "l.md").read_text().split("\n---\n", 1)[1]
    assert "<script" not in rendered and "<img" not in rendered and "<b>" not in rendered


@pytest.mark.parametrize("text", INJECTIONS + ["a | b", "# heading", "`code`", "line\nbreak", "**bold**"])
def test_md_escape_neutralises_markup(text: str) -> None:
    escaped = md_escape(text)
    assert "<" not in escaped and ">" not in escaped and "\n" not in escaped
    for ch in "|[]`*#":
        assert ch not in escaped.replace("\\" + ch, "")
