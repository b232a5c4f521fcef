"""`cardgen lint CARD.md`: offline checks that a model card is complete and that the Hub would accept it.

Problems (the card is wrong or incomplete): no front matter or YAML that does not parse, null values, a model-index
without the fields the Hub requires, no license, no base_model or a local path as base_model, an image that does not
exist, unbalanced cardgen markers, control characters (NUL, ESC codes, bidi overrides). Warnings (the card works
but is unfinished): placeholder text left for the author ("TODO (author)", "More information needed", ...), no
results in model-index, images by absolute path. ``strict`` turns warnings
into problems. Pure Python and PyYAML: no network, no torch.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cardgen.errors import CardgenError, OutputError

# Text a template or a person leaves for later. Matched case-insensitively, one finding per line.
PLACEHOLDERS = (
    r"TODO \(author\)",
    r"\[?More Information Needed\]?",
    r"\bTODO\b",
    r"\bTBD\b",
    r"\bFIXME\b",
    r"\bXXX\b",
    r"\{\{[^}]*\}\}",  # an unrendered Jinja expression
    r"Lorem ipsum",
)
_PLACEHOLDER_RE = re.compile("|".join(f"(?:{p})" for p in PLACEHOLDERS), re.IGNORECASE)
_FRONT_MATTER_RE = re.compile(r"\A\s*---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_MD_IMAGE_RE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_IMAGE_RE = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_REMOTE = ("http://", "https://", "data:", "//")
# A local path where a Hub id belongs: absolute, home-relative, explicitly relative, a Windows drive, a package.
_LOCAL_PATH_RE = re.compile(r"^(?:/|~|\.{1,2}(?:/|\\|$)|\\|[A-Za-z]:[\\/])|site-packages|\.\.\.?/")


@dataclass
class Finding:
    """One thing lint found: ``level`` is "problem" or "warning", ``code`` a stable short name for CI filters."""

    level: str
    code: str
    message: str
    line: int | None = None  # 1-based line in the card, where one applies


@dataclass
class LintResult:
    """What :func:`lint_card` found in one card."""

    path: str
    strict: bool
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        """Findings that fail the lint (warnings too, when strict)."""
        return [f for f in self.findings if f.level == "problem" or self.strict]

    @property
    def warnings(self) -> list[Finding]:
        """Findings that do not fail the lint (none when strict)."""
        return [] if self.strict else [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is nothing that fails the lint."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``cardgen lint --json``."""
        return {"path": self.path, "ok": self.ok, "strict": self.strict,
                "problems": [asdict(f) for f in self.problems], "warnings": [asdict(f) for f in self.warnings]}


def lint_card(path: str | Path, strict: bool = False) -> LintResult:
    """Check a model card file offline.

    Args:
        path: The card (README.md); a directory means its README.md.
        strict: Count warnings (placeholders, missing results, absolute image paths) as problems.

    Returns:
        The findings; ``result.ok`` is False when the card has problems.

    Raises:
        OutputError: The file does not exist or is not UTF-8 text.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "README.md"
    if not path.is_file():
        raise OutputError(f"no model card at {path}", "give the path of a README.md (or of a run directory)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise OutputError(f"{path} is not UTF-8 text", "re-save the card as UTF-8") from exc
    result = LintResult(path=str(path), strict=strict)
    result.findings = lint_text(text, path.parent)
    return result


def lint_text(text: str, base_dir: Path) -> list[Finding]:
    """The findings for card ``text`` whose relative image paths resolve against ``base_dir``."""
    findings: list[Finding] = []
    metadata, body_start = _front_matter(text, findings)
    if metadata is not None:
        findings += check_metadata(metadata)
    lines = text.splitlines()
    findings += _placeholders(lines, body_start)
    findings += _images(lines, body_start, base_dir)
    findings += _control_characters(text)
    if metadata is not None or not _FRONT_MATTER_RE.match(text):
        findings += _markers(text)  # a broken front matter is reported once, above
    return findings


def _front_matter(text: str, findings: list[Finding]) -> tuple[dict[str, Any] | None, int]:
    """The parsed front matter (None when missing or broken, with a finding) and the body's first line index."""
    import yaml

    match = _FRONT_MATTER_RE.match(text)
    if match is None:
        findings.append(Finding("problem", "no-front-matter",
                                "the card has no YAML front matter (a block between two '---' lines at the top)", 1))
        return None, 0
    body_start = text[: match.end()].count("\n")
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1  # +1 for 1-based, +1 for the opening '---'
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        findings.append(Finding("problem", "yaml-invalid", f"the front matter is not valid YAML: {problem}", line))
        return None, body_start
    if data is None:
        data = {}
    if not isinstance(data, dict):
        findings.append(Finding("problem", "yaml-not-mapping",
                                f"the front matter must be a mapping of keys to values, not a {type(data).__name__}", 2))
        return None, body_start
    return data, body_start


def null_paths(value: Any, path: str) -> list[str]:
    if value is None:
        return [path or "(root)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in null_paths(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in null_paths(v, f"{path}[{i}]")]
    return []


def check_metadata(metadata: dict[str, Any]) -> list[Finding]:
    """Findings in the card's metadata: nulls, license, base_model and the model-index structure."""
    out = [Finding("problem", "null-value", f"`{p}` is null; the Hub rejects null values (drop the key)")
           for p in null_paths(metadata, "")]
    if not metadata.get("license"):
        out.append(Finding("problem", "no-license", "no `license` in the metadata",))
    if not metadata.get("base_model"):
        out.append(Finding("problem", "no-base-model",
                           "no `base_model` in the metadata (the Hub id of the model this one was made from)"))
    base_models = metadata.get("base_model")
    for name in base_models if isinstance(base_models, list) else [base_models]:
        if isinstance(name, str) and _LOCAL_PATH_RE.search(name):
            out.append(Finding("problem", "base-model-local",
                               f"`base_model` {name!r} is a local path, not a Hub id (set card.base_model to the "
                               "Hub id of the model it was made from)"))
    if "model-index" not in metadata:
        out.append(Finding("warning", "no-results", "no `model-index`: the card reports no evaluation results"))
        return out
    out += check_model_index(metadata["model-index"])
    return out


def hub_problems(metadata: dict[str, Any]) -> list[str]:
    """What the Hub would reject in a card's metadata (null values, an incomplete model-index), one message each.

    The same rules as :func:`check_metadata`, less the findings the Hub accepts (no license, no base_model, no
    results): ``cardgen push`` refuses on these before it writes anything.
    """
    findings = [Finding("problem", "null-value", f"`{p}` is null (the Hub rejects nulls; drop the key)")
                for p in null_paths(metadata, "")]
    if "model-index" in metadata:
        findings += check_model_index(metadata["model-index"])
    return [f.message for f in findings if f.level == "problem"]


def check_model_index(model_index: Any) -> list[Finding]:
    """The Hub's model-index: ``[{name, results: [{task: {type}, dataset: {type, name}, metrics: [{type,
    value}]}]}]``; the fields named here are required."""
    def problem(where: str, what: str) -> Finding:
        return Finding("problem", "model-index", f"`{where}` {what}")

    if not isinstance(model_index, list) or not model_index:
        return [problem("model-index", "must be a non-empty list")]
    out: list[Finding] = []
    results_seen = 0
    for i, entry in enumerate(model_index):
        where = f"model-index[{i}]"
        if not isinstance(entry, dict):
            out.append(problem(where, "must be a mapping"))
            continue
        if not entry.get("name"):
            out.append(problem(f"{where}.name", "is missing"))
        results = entry.get("results")
        if results is None:
            out.append(problem(f"{where}.results", "is missing"))
            continue
        if not isinstance(results, list):
            out.append(problem(f"{where}.results", "must be a list"))
            continue
        results_seen += len(results)
        for j, res in enumerate(results):
            rw = f"{where}.results[{j}]"
            if not isinstance(res, dict):
                out.append(problem(rw, "must be a mapping"))
                continue
            task = res.get("task")
            if not isinstance(task, dict) or not task.get("type"):
                out.append(problem(f"{rw}.task.type", "is missing"))
            dataset = res.get("dataset")
            for key in ("type", "name"):
                if not isinstance(dataset, dict) or not dataset.get(key):
                    out.append(problem(f"{rw}.dataset.{key}", "is missing"))
            metrics = res.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                out.append(problem(f"{rw}.metrics", "must be a non-empty list"))
                continue
            for k, metric in enumerate(metrics):
                mw = f"{rw}.metrics[{k}]"
                if not isinstance(metric, dict):
                    out.append(problem(mw, "must be a mapping"))
                    continue
                if not metric.get("type"):
                    out.append(problem(f"{mw}.type", "is missing"))
                if "value" not in metric:
                    out.append(problem(f"{mw}.value", "is missing"))
                elif isinstance(metric["value"], bool) or not isinstance(metric["value"], (int, float, str)):
                    out.append(problem(f"{mw}.value", "must be a number (or a string)"))
    if not results_seen and not out:
        out.append(Finding("warning", "no-results", "model-index lists no results: the card reports no numbers"))
    return out


def _placeholders(lines: list[str], start: int) -> list[Finding]:
    out = []
    in_comment = in_fence = False
    for number, line in enumerate(lines[start:], start=start + 1):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        if in_fence:  # code shown in the card may hold anything, braces and TODOs included
            continue
        # HTML comments (cardgen's markers among them) are invisible on the Hub: not placeholder text.
        visible, in_comment = _strip_comments(line, in_comment)
        match = _PLACEHOLDER_RE.search(visible)
        if match:
            shown = " ".join(visible.split())
            shown = shown if len(shown) <= 48 else shown[:47] + "…"
            out.append(Finding("warning", "placeholder", f"placeholder text left: {match.group(0)!r} in: {shown}",
                               number))
    return out


def _strip_comments(line: str, in_comment: bool) -> tuple[str, bool]:
    visible: list[str] = []
    rest = line
    while rest:
        if in_comment:
            end = rest.find("-->")
            if end < 0:
                return "".join(visible), True
            rest, in_comment = rest[end + 3:], False
        else:
            begin = rest.find("<!--")
            if begin < 0:
                visible.append(rest)
                break
            visible.append(rest[:begin])
            rest, in_comment = rest[begin + 4:], True
    return "".join(visible), in_comment


def _images(lines: list[str], start: int, base_dir: Path) -> list[Finding]:
    out = []
    for number, line in enumerate(lines[start:], start=start + 1):
        for target in _MD_IMAGE_RE.findall(line) + _HTML_IMAGE_RE.findall(line):
            if target.lower().startswith(_REMOTE):
                continue
            local = target.split("#")[0].split("?")[0]
            if Path(local).is_absolute():
                out.append(Finding("warning", "image-absolute",
                                   f"image {target} is an absolute path; it will not show on the Hub", number))
                exists = Path(local).is_file()
            else:
                exists = (base_dir / local).is_file()
            if not exists:
                out.append(Finding("problem", "image-missing", f"image {target} does not exist", number))
    return out


def _control_characters(text: str) -> list[Finding]:
    """Control characters (NUL, ESC codes, ...) and bidi overrides (U+202E), one finding per line."""
    from cardgen.card.format import CONTROL_CHARACTERS

    out = []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): it breaks on \x0c and \x1c too
        found = sorted({f"U+{ord(c):04X}" for c in CONTROL_CHARACTERS.findall(line.removesuffix("\r"))})
        if found:
            out.append(Finding("problem", "control-character",
                               f"control or bidi character(s) {', '.join(found)}: a terminal runs them, grep calls "
                               "the card binary, text may display reversed (replace them)", number))
    return out


def _markers(text: str) -> list[Finding]:
    from cardgen.card.markers import merge_generated

    try:
        merge_generated(text, text)  # parses every marker pair; raises on unbalanced, nested or repeated ones
    except CardgenError as exc:
        return [Finding("problem", "markers", exc.message)]
    return []
