"""Presentation of a Comparison for the card and ``cardgen compare --markdown``: numbers rounded and
texts escaped; the templates only print. Computing comparisons is :mod:`cardgen.compare`'s job.
"""

from __future__ import annotations

from typing import Any

from cardgen.card.format import display_model, format_interval, format_p, short_test
from cardgen.record import Comparison, FlipExample, MetricComparison


def row_p(comparison: Comparison, row: MetricComparison) -> str:
    """The p-value of one row as printed: a permutation p-value at its floor reads "< 0.0001 (the smallest 10,000
    permutations can give)" (run.json keeps the exact ``1 / (1 + N)``); exact tests print their value."""
    permutation = short_test(row.test) == "paired permutation"
    return format_p(row.p_value, comparison.permutations if permutation else None)


def _p_clause(p: str) -> str:
    """``p = 0.0123``, or ``p < 0.0001 (...)`` for a bound."""
    return f"p {p}" if p.startswith("<") else f"p = {p}"


def table_rows(comparison: Comparison) -> list[tuple[str, str, str, str, str, str]]:
    """(metric, base, fine-tuned, delta, p-value, test) as plain strings, for the terminal and the card."""
    return [(r.name, format_interval(r.base), format_interval(r.fine_tuned), format_interval(r.delta, signed=True),
             row_p(comparison, r), short_test(r.test)) for r in comparison.metrics]


def comparison_context(comparison: Comparison, base_name: str | None = None) -> dict[str, Any]:
    """What ``partials/comparison.md.j2`` prints: every number rounded, every text escaped.

    Args:
        comparison: The comparison.
        base_name: How the card names the base model (default: from ``comparison.base_model``).
    """
    from cardgen.card.format import fmt, md_escape

    c = comparison
    grouped: dict[str, list[str]] = {}
    for r in c.metrics:
        grouped.setdefault(r.test or "—", []).append(r.name)
    tests = [(md_escape(", ".join(metric_names)), md_escape(test)) for test, metric_names in grouped.items()]

    def flip_rows(items: list[FlipExample]) -> list[dict[str, Any]]:
        return [{"index": e.index, "text": md_escape(e.text), "label": md_escape(e.label),
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
        "permutations": f"{c.permutations:,}",
        "seed": c.seed,
        "interval_method": c.interval_method,
        "rows": [dict(zip(("name", "base", "fine_tuned", "delta", "p", "test"), (md_escape(row[0]), *row[1:]),
                          strict=True)) for row in table_rows(c)],
        "per_class": [{"label": md_escape(r.label), "support": r.support, "name": r.name,
                       "base": format_interval(r.base), "fine_tuned": format_interval(r.fine_tuned),
                       "delta": format_interval(r.delta, signed=True)} for r in c.per_class],
        "tests": tests,
        "accuracy_delta": format_interval(acc.delta, signed=True),
        "accuracy_p": _p_clause(row_p(c, acc)),
        "accuracy_test": md_escape(short_test(acc.test)),
        "wrong_to_right": c.wrong_to_right,
        "right_to_wrong": c.right_to_wrong,
        "net": f"{c.wrong_to_right - c.right_to_wrong:+d}",
        "wrong_to_right_examples": flip_rows(c.wrong_to_right_examples),
        "right_to_wrong_examples": flip_rows(c.right_to_wrong_examples),
        "probe": probe,
    }


def markdown_context(comparison: Comparison) -> dict[str, Any]:
    """What ``partials/score_comparison.md.j2`` prints: every number rounded, every text escaped."""
    from cardgen.card.format import display_model, format_interval, md_escape
    from cardgen.stats.metrics import LOWER_IS_BETTER

    c = comparison
    rows = [{"name": md_escape(r.name + (" (lower is better)" if r.key in LOWER_IS_BETTER else "")),
             "base": format_interval(r.base), "fine_tuned": format_interval(r.fine_tuned),
             "delta": format_interval(r.delta, signed=True), "p": row_p(c, r)} for r in c.metrics]
    return {"base_model": md_escape(display_model(c.base_model)),
            "fine_tuned_model": md_escape(display_model(c.fine_tuned_model)), "n": c.num_examples,
            "split": md_escape(c.split), "confidence": f"{c.confidence * 100:g}%", "rows": rows,
            "interval_method": c.interval_method, "bootstrap_samples": c.bootstrap_samples, "seed": c.seed,
            "test": next((r.test for r in c.metrics if r.test), "—"), "permutations": f"{c.permutations:,}"}
