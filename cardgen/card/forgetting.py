"""The card's "Forgetting check" section: the change on the general set beside the change on the target task."""

from __future__ import annotations

from typing import Any

from cardgen.card.format import fmt, format_interval, md_escape, signed
from cardgen.record import Comparison, EvaluationRecord, RunRecord
from cardgen.stats.metrics import LOWER_IS_BETTER, METRIC_NAMES

SHOWN = ("accuracy", "f1_macro", "perplexity", "bits_per_byte", "exact_match", "f1")


def _cell(key: str, base: EvaluationRecord | None, ft: EvaluationRecord | None,
          comparison: Comparison | None) -> str:
    """"base -> fine-tuned, change [CI]" of one metric (the points alone when there is no comparison)."""
    row = next((r for r in comparison.metrics if r.key == key), None) if comparison is not None else None
    if row is not None:
        return f"{fmt(row.base[0])} → {fmt(row.fine_tuned[0])}, change {format_interval(row.delta, signed=True)}"
    b = base.metrics.get(key) if base is not None else None
    f = ft.metrics.get(key) if ft is not None else None
    if f is None:
        return "—"
    if b is None or base is None or base.extra.get("meaningful") is False:
        return f"{fmt(f)} (no base to compare)"
    return f"{fmt(b)} → {fmt(f)}, change {signed(f - b)}"


def _assessment(key: str, comparison: Comparison | None) -> str | None:
    """What the general set's interval says about forgetting, for the headline metric."""
    row = next((r for r in comparison.metrics if r.key == key), None) if comparison is not None else None
    if row is None:
        return None
    _, low, high = row.delta
    name = METRIC_NAMES.get(key, key)
    worse = (low > 0) if key in LOWER_IS_BETTER else (high < 0)
    better = (high < 0) if key in LOWER_IS_BETTER else (low > 0)
    if worse:
        return (f"**Forgetting:** the fine-tuned model is worse than the base outside its training domain "
                f"({name}: the whole interval of the change lies on the worse side).")
    if better:
        return f"The fine-tuned model is better than the base on the general set too ({name}: the interval excludes 0)."
    return (f"No significant change on the general set ({name}: the interval of the change includes 0, so it "
            "cannot tell a loss from noise).")


def forgetting_context(record: RunRecord) -> dict[str, Any] | None:
    """Rows of the Forgetting check section (None without ``data.general``)."""
    g = record.general
    if g is None or g.fine_tuned is None:
        return None
    keys = [k for k in SHOWN if k in g.fine_tuned.metrics]
    target = record.evaluation.split if record.evaluation else "test"
    rows = [{"name": METRIC_NAMES.get(k, k) + (" (lower is better)" if k in LOWER_IS_BETTER else ""),
             "target": _cell(k, record.base_evaluation, record.evaluation, record.comparison),
             "general": _cell(k, g.base, g.fine_tuned, g.comparison)} for k in keys]
    intervals = None
    if g.comparison is not None:
        c = g.comparison
        intervals = (f"Changes are fine-tuned minus base with {c.confidence * 100:g}% intervals ({c.interval_method}, "
                     f"{c.bootstrap_samples} resamples, seed {c.seed}); the base on the general set is evaluated "
                     f"the same way as on the target task ({c.method}).")
    return {"name": md_escape(g.name), "n": g.num_examples, "target_split": target, "rows": rows,
            "assessment": _assessment(keys[0], g.comparison) if keys else None,
            "intervals": intervals, "note": md_escape(g.note[0].upper() + g.note[1:]) if g.note else None,
            "fingerprint": g.fingerprint[:12]}
