"""Formatting primitives shared by every presentation: numbers, intervals, p-values, escaped
texts and model names. A leaf: it imports nothing of cardgen.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    """A number for the card: floats to ``digits`` decimals, ints as they are, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) < 10 ** (-digits) or abs(value) >= 1e6):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


# Characters that must never reach a card raw: C0/C1 controls (NUL makes grep call the card binary, ESC codes
# run in a terminal) and the bidi overrides and isolates that display text reversed (U+202E).
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                                "\u2066-\u2069]")


def visible_controls(text: str) -> str:
    """``text`` with each control or bidi character written as its escape (``\\x1b``, ``\\u202e``)."""
    return CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                  else f"\\u{ord(m.group()):04x}", text)


def md_escape(text: Any, limit: int | None = None) -> str:
    """Text from data made safe inside Markdown and HTML: no tags, no table breaks, one line, no control
    characters (shown as escapes such as ``\\x1b``)."""
    text = visible_controls(" ".join(str(text).split()))
    if limit and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    # Quotes stay as they are: no tag can form once < and > are escaped, and an entity such as &#x27; would
    # show up literally once its "#" is escaped (I&\#x27;m instead of I'm).
    text = html.escape(text, quote=False)
    return re.sub(r"([\\`*_\[\]|#])", r"\\\1", text)


def slug(text: str) -> str:
    """A Hub-style identifier made of a display name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dataset"


def signed(value: float) -> str:
    return ("+" if value > 0 else "") + fmt(value)


SHORT_TESTS = (("exact McNemar", "exact McNemar"), ("paired permutation", "paired permutation"))


def _num(value: float, signed: bool = False) -> str:
    from cardgen.card.format import fmt

    value = round(float(value), 4) + 0.0  # no "-0.0000"
    text = fmt(value)
    return f"+{text}" if signed and value > 0 else text


def format_interval(values: Sequence[float], signed: bool = False) -> str:
    """``point [low, high]`` with four decimals (signed for deltas)."""
    point, low, high = values
    return f"{_num(point, signed)} [{_num(low, signed)}, {_num(high, signed)}]"


def format_p(p: float | None, permutations: int | None = None) -> str:
    """A p-value: four decimals, or two significant digits below 0.0001.

    With ``permutations`` (a permutation test's p-value), a p-value at its floor ``1 / (1 + permutations)`` (no
    permutation reached the observed effect) is not an exact value but a bound, and says so:
    ``< 0.001 (the smallest 1,000 permutations can give)``.
    """
    if p is None:
        return "—"
    if permutations and abs(p * (1 + permutations) - 1) < 1e-9:
        return f"< {_plain(1 / permutations)} (the smallest {permutations:,} permutations can give)"
    return f"{p:.1e}" if 0 < p < 1e-4 else f"{p:.4f}"


def _plain(value: float) -> str:
    """A small positive number with two significant digits and no exponent: 0.001, 0.0005, 0.000033."""
    digits = max(0, 1 - math.floor(math.log10(value)))
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


def short_test(test: str | None) -> str:
    """A test's short name for table cells (the full name goes below the table)."""
    for prefix, short in SHORT_TESTS:
        if test and test.startswith(prefix):
            return short
    return test or "—"


def shorten_path(path: Path, roots: Sequence[tuple[Path, str]]) -> str:
    """A local absolute path without the machine's directory layout (the one rule of the card and the pushed
    run.json): ``site-packages/...`` inside an installed package; else relative to the first of ``roots`` it lies
    in, as ``label/rest`` (label "." gives a plain relative path); else ``.../parent/name``."""
    if "site-packages" in path.parts:
        return "/".join(path.parts[path.parts.index("site-packages"):])
    for root, label in roots:
        if path == root:
            return label
        if path.is_relative_to(root):
            rel = path.relative_to(root).as_posix()
            return rel if label == "." else f"{label}/{rel}"
    return ".../" + "/".join(path.parts[-2:])


def card_path(value: str, run_dir: str | None) -> str:
    """A local path as the card shows it: relative to the run directory (up to two levels above it), ``~/...``
    under the home directory, else shortened by :func:`shorten_path`. The same bytes from any working directory;
    anything that is not an absolute path is returned as it is."""
    path = Path(value)
    if not path.is_absolute() or len(path.parts) < 3:
        return value
    roots: list[tuple[Path, str]] = []
    if run_dir and Path(run_dir).is_absolute():
        run = Path(run_dir)
        roots = [(root, label) for root, label in ((run, "."), (run.parent, ".."), (run.parent.parent, "../.."))
                 if len(root.parts) > 1]
    return shorten_path(path, [*roots, (Path.home(), "~")])


def display_model(name: str) -> str:
    """A model name for display: Hub ids as they are, local paths relative to the working directory or short."""
    path = Path(name)
    if not path.is_absolute():
        return name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return "/".join(path.parts[-2:])
