"""Presentation of a Comparison: numbers rounded and texts escaped for the terminal, the card and
``cardgen compare --markdown``; the templates only print.

Split from compare.py (which computes comparisons) when that module passed 800 lines: rendering changes with the
card, computing with the statistics, and neither needs the other's imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cardgen.record import Comparison, FlipExample

FLIP_TEXT_CHARS = 160
SHORT_TESTS = (("exact McNemar", "exact McNemar"), ("paired permutation", "paired permutation"))


def shorten(text: str, limit: int = FLIP_TEXT_CHARS) -> str:
    """One line of at most ``limit`` characters, cut at a word boundary with an ellipsis."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


def _num(value: float, signed: bool = False) -> str:
    from cardgen.card import fmt

    value = round(float(value), 4) + 0.0  # no "-0.0000"
    text = fmt(value)
    return f"+{text}" if signed and value > 0 else text


def format_interval(values: Sequence[float], signed: bool = False) -> str:
    """``point [low, high]`` with four decimals (signed for deltas)."""
    point, low, high = values
    return f"{_num(point, signed)} [{_num(low, signed)}, {_num(high, signed)}]"


def format_p(p: float | None) -> str:
    """A p-value: four decimals, or two significant digits below 0.0001."""
    if p is None:
        return "—"
    return f"{p:.1e}" if 0 < p < 1e-4 else f"{p:.4f}"


def short_test(test: str | None) -> str:
    """A test's short name for table cells (the full name goes below the table)."""
    for prefix, short in SHORT_TESTS:
        if test and test.startswith(prefix):
            return short
    return test or "—"


def table_rows(comparison: Comparison) -> list[tuple[str, str, str, str, str, str]]:
    """(metric, base, fine-tuned, delta, p-value, test) as plain strings, for the terminal and the card."""
    return [(r.name, format_interval(r.base), format_interval(r.fine_tuned), format_interval(r.delta, signed=True),
             format_p(r.p_value), short_test(r.test)) for r in comparison.metrics]


def display_model(name: str) -> str:
    """A model name for display: Hub ids as they are, local paths relative to the working directory or short."""
    path = Path(name)
    if not path.is_absolute():
        return name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return "/".join(path.parts[-2:])


def comparison_context(comparison: Comparison, base_name: str | None = None) -> dict[str, Any]:
    """What ``partials/comparison.md.j2`` prints: every number rounded, every text escaped.

    Args:
        comparison: The comparison.
        base_name: How the card names the base model (default: from ``comparison.base_model``).
    """
    from cardgen.card import fmt, md_escape

    c = comparison
    grouped: dict[str, list[str]] = {}
    for r in c.metrics:
        grouped.setdefault(r.test or "—", []).append(r.name)
    tests = [(md_escape(", ".join(metric_names)), md_escape(test)) for test, metric_names in grouped.items()]

    def flip_rows(items: list[FlipExample]) -> list[dict[str, Any]]:
        return [{"index": e.index, "text": md_escape(e.text, FLIP_TEXT_CHARS), "label": md_escape(e.label),
                 "base": md_escape(e.base_prediction), "fine_tuned": md_escape(e.fine_tuned_prediction)}
                for e in items]

    probe = None
    if c.probe is not None:
        probe = {"features": c.probe.features, "feature_dim": c.probe.feature_dim,
                 "classifier": md_escape(c.probe.classifier), "num_train": c.probe.num_train,
                 "train_split": md_escape(c.probe.train_split), "train_accuracy": fmt(c.probe.train_accuracy),
                 "seed": c.probe.seed}
    acc = next(r for r in c.metrics if r.key == "accuracy")
    return {
        "method": c.method,
        "base_model": md_escape(base_name or display_model(c.base_model)),
        "fine_tuned_model": md_escape(display_model(c.fine_tuned_model)),
        "split": md_escape(c.split),
        "n": c.num_examples,
        "max_length": c.max_length,
        "confidence": f"{c.confidence * 100:g}%",
        "bootstrap_samples": c.bootstrap_samples,
        "permutations": c.permutations,
        "seed": c.seed,
        "interval_method": c.interval_method,
        "rows": [dict(zip(("name", "base", "fine_tuned", "delta", "p", "test"), (md_escape(row[0]), *row[1:]),
                          strict=True)) for row in table_rows(c)],
        "per_class": [{"label": md_escape(r.label), "support": r.support, "name": r.name,
                       "base": format_interval(r.base), "fine_tuned": format_interval(r.fine_tuned),
                       "delta": format_interval(r.delta, signed=True)} for r in c.per_class],
        "tests": tests,
        "accuracy_delta": format_interval(acc.delta, signed=True),
        "accuracy_p": format_p(acc.p_value),
        "accuracy_test": md_escape(short_test(acc.test)),
        "wrong_to_right": c.wrong_to_right,
        "right_to_wrong": c.right_to_wrong,
        "net": f"{c.wrong_to_right - c.right_to_wrong:+d}",
        "wrong_to_right_examples": flip_rows(c.wrong_to_right_examples),
        "right_to_wrong_examples": flip_rows(c.right_to_wrong_examples),
        "probe": probe,
    }


def render_markdown(comparison: Comparison, base_name: str | None = None) -> str:
    """The card's "Comparison with the base model" section on its own (``cardgen compare --markdown``)."""
    from cardgen.card import _environment, templates_dir

    env = _environment([templates_dir()])
    if comparison.task != "text-classification":
        from cardgen.compare_scores import markdown_context

        return str(env.get_template("partials/score_comparison.md.j2").render(
            comparison=markdown_context(comparison)))
    text = env.get_template("partials/comparison.md.j2").render(comparison=comparison_context(comparison, base_name))
    return str(text)
