"""Generated sections of a model card, and how a re-generated card merges into a hand-edited one.

cardgen writes each generated part of a card between two marker lines::

    <!-- cardgen:begin results -->
    ...generated...
    <!-- cardgen:end results -->

Everything outside markers belongs to people. :func:`merge_generated` replaces the generated sections of an
existing card with the new ones and keeps the human text, so a card can be re-rendered and pushed again without
losing what someone wrote on the Hub. Pure Python and PyYAML: no torch, no huggingface_hub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from cardgen.errors import CardgenError

BEGIN = "<!-- cardgen:begin {name} -->"
END = "<!-- cardgen:end {name} -->"

_BEGIN_RE = re.compile(r"^[ \t]*<!--\s*cardgen:begin\s+([A-Za-z0-9_.-]+)\s*-->[ \t]*$")
_END_RE = re.compile(r"^[ \t]*<!--\s*cardgen:end\s+([A-Za-z0-9_.-]+)\s*-->[ \t]*$")
# The same block huggingface_hub's RepoCard recognises as metadata.
_FRONT_MATTER_RE = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")

_HINT = "fix the cardgen:begin/end marker lines in the card, or replace the card with --overwrite"


@dataclass(frozen=True)
class _Section:
    name: str
    text: str  # from the begin line through the end line and its newline


def section(name: str, content: str) -> str:
    """Wrap ``content`` in the marker lines of section ``name`` (for templates and tests)."""
    body = content if content.endswith("\n") or not content else content + "\n"
    return f"{BEGIN.format(name=name)}\n{body}{END.format(name=name)}\n"


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split a card into its YAML front matter and its Markdown body.

    Args:
        text: The card's full text.

    Returns:
        ``(metadata, body)``: the front matter as a dict (empty when the card has none) and the text after it.

    Raises:
        CardgenError: The front matter is not valid YAML or not a mapping.
    """
    match = _FRONT_MATTER_RE.match(text)
    if match is None:
        return {}, text
    try:
        data = yaml.safe_load(match.group(2))
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise CardgenError(f"the card's YAML front matter is not valid YAML: {problem}",
                           "fix the block between the two '---' lines at the top of README.md") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CardgenError(f"the card's YAML front matter must be a mapping, got {type(data).__name__}",
                           "the block between the two '---' lines must hold `key: value` pairs")
    return data, text[match.end():]


def join_front_matter(metadata: dict[str, Any], body: str) -> str:
    """The inverse of :func:`split_front_matter`: a card from metadata and body (no block when empty)."""
    if not metadata:
        return body
    dumped = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return f"---\n{dumped}---\n{body}"


def has_markers(text: str) -> bool:
    """Whether ``text`` holds at least one cardgen marker line."""
    return any(_BEGIN_RE.match(line) or _END_RE.match(line) for line in text.splitlines())


def _parse(body: str, what: str) -> list[str | _Section]:
    """The body as human text chunks and generated sections, in order."""
    parts: list[str | _Section] = []
    text: list[str] = []
    current: str | None = None
    seen: set[str] = set()
    block: list[str] = []
    for number, line in enumerate(body.splitlines(keepends=True), start=1):
        stripped = line.rstrip("\r\n")
        begin, end = _BEGIN_RE.match(stripped), _END_RE.match(stripped)
        if current is None:
            if end:
                raise CardgenError(f"{what}: line {number} ends section '{end.group(1)}' that never began", _HINT)
            if begin:
                name = begin.group(1)
                if name in seen:
                    raise CardgenError(f"{what}: section '{name}' appears twice (line {number})", _HINT)
                if text:
                    parts.append("".join(text))
                    text = []
                current, block = name, [line]
            else:
                text.append(line)
        else:
            block.append(line)
            if begin:
                raise CardgenError(f"{what}: line {number} begins section '{begin.group(1)}' inside "
                                   f"section '{current}'", _HINT)
            if end:
                if end.group(1) != current:
                    raise CardgenError(f"{what}: line {number} ends section '{end.group(1)}' but "
                                       f"'{current}' is open", _HINT)
                if not line.endswith("\n"):
                    block[-1] = line + "\n"
                parts.append(_Section(current, "".join(block)))
                seen.add(current)
                current, block = None, []
    if current is not None:
        raise CardgenError(f"{what}: section '{current}' never ends", _HINT)
    if text:
        parts.append("".join(text))
    return parts


def merge_front_matter(existing: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """New keys win; keys only in ``existing`` are kept (after the new ones)."""
    merged = dict(new)
    for key, value in existing.items():
        if key not in merged:
            merged[key] = value
    return merged


def merge_generated(existing: str, new: str) -> str:
    """Merge a freshly generated card into an existing, possibly hand-edited one.

    Every generated section of ``existing`` that ``new`` also has is replaced by the new content; text outside
    markers (written by people) stays as it is, and so do sections the new card no longer has. Sections only in
    ``new`` are inserted after the section that precedes them in ``new`` (or before the first generated
    section). The front matter is ``new``'s merged over ``existing``'s: new keys win, old-only keys are kept.
    If ``existing`` holds no markers at all, the result is ``new``.

    Args:
        existing: The card as it is now (for example, on the Hub).
        new: The card cardgen just rendered.

    Returns:
        The merged card text. Merging a card into itself returns it unchanged.

    Raises:
        CardgenError: A card's markers are unbalanced, nested or repeated, or its front matter is not YAML.
    """
    old_meta, old_body = split_front_matter(existing)
    if not has_markers(old_body):
        return new
    new_meta, new_body = split_front_matter(new)
    old_parts = _parse(old_body, "the existing card")
    new_sections = [p for p in _parse(new_body, "the new card") if isinstance(p, _Section)]
    by_name = {s.name: s for s in new_sections}

    out: list[str | _Section] = [by_name.get(p.name, p) if isinstance(p, _Section) else p for p in old_parts]
    present = {p.name for p in out if isinstance(p, _Section)}
    for index, sec in enumerate(new_sections):
        if sec.name in present:
            continue
        anchor = next((s.name for s in reversed(new_sections[:index]) if s.name in present), None)
        if anchor is None:
            first = next(i for i, p in enumerate(out) if isinstance(p, _Section))
            out.insert(first, sec)
        else:
            at = next(i for i, p in enumerate(out) if isinstance(p, _Section) and p.name == anchor)
            out.insert(at + 1, sec)
        present.add(sec.name)

    body = "".join(p.text if isinstance(p, _Section) else p for p in out)
    merged_meta = merge_front_matter(old_meta, new_meta)
    if merged_meta == new_meta and list(merged_meta) == list(new_meta):
        # Keep the new card's own YAML text (huggingface_hub wrote it) byte for byte.
        match = _FRONT_MATTER_RE.match(new)
        return (match.group(0) if match else "") + body
    return join_front_matter(merged_meta, body)
