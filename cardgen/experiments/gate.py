"""The ship gate: ``compare.require`` rules judged on the comparison's paired intervals.

Superiority (``min_delta``) passes when the lower bound of the improvement's interval exceeds the threshold, so a
gain the interval cannot separate from noise never ships. Non-inferiority (``max_worse``) passes when even the
worst end of that interval is no worse than the margin. Improvement is fine-tuned minus base, negated for metrics
where lower is better (perplexity), so "low end" always means the pessimistic end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cardgen.config.gate import GENERAL, RequireRule
from cardgen.record import Comparison, MetricComparison, RuleResult, RunRecord, Verdict
from cardgen.stats.metrics import LOWER_IS_BETTER, METRIC_NAMES

if TYPE_CHECKING:
    from cardgen.config import RunConfig


def judge(rules: list[RequireRule], comparisons: Mapping[str, Comparison | None], default_data: str,
          missing: Mapping[str, str] | None = None) -> Verdict:
    """Judge every rule on the comparison of its data set.

    Args:
        rules: The gate's rules.
        comparisons: Data set name (the evaluation split, ``"general"``) -> its base-vs-fine-tuned comparison.
        default_data: The data set of a rule that names none (the evaluation split).
        missing: Data set name -> why it has no comparison, for the reason of the rules that need one.

    Returns:
        The verdict; it passes only when every rule passes.
    """
    results = [_judge_rule(rule, rule.data or default_data, comparisons.get(rule.data or default_data),
                           (missing or {}).get(rule.data or default_data)) for rule in rules]
    confidences = [c.confidence for c in comparisons.values() if c is not None]
    return Verdict(passed=all(r.passed for r in results), confidence=confidences[0] if confidences else None,
                   rules=results)


def _judge_rule(rule: RequireRule, data: str, comparison: Comparison | None, why_missing: str | None) -> RuleResult:
    amount, relative = rule.threshold
    lower = rule.metric in LOWER_IS_BETTER
    base_fields: dict[str, Any] = {"metric": rule.metric, "name": METRIC_NAMES.get(rule.metric, rule.metric), "data": data,
                   "kind": rule.kind, "lower_is_better": lower}
    row = _row(comparison, rule.metric)
    if row is None:
        why = why_missing or (f"the comparison on {data} has no {rule.metric} row" if comparison is not None
                              else f"there is no comparison on {data}")
        text = f"{amount * 100:g}%" if relative else f"{amount:g}"
        return RuleResult(**base_fields, threshold=amount, threshold_text=text, passed=False,
                          reason=f"not judged: {why}")
    threshold = amount * abs(row.base[0]) if relative else amount
    text = f"{amount * 100:g}% of its {row.base[0]:.4g} ({threshold:.4g})" if relative else f"{amount:g}"
    point, low, high = row.delta
    improvement = [-point, -high, -low] if lower else [point, low, high]
    decisive = not (low <= 0 <= high)
    worse = "higher" if lower else "lower"
    if rule.kind == "superiority":
        passed = improvement[1] > threshold
        reason = (f"the improvement's {_pct(comparison)} interval starts at {improvement[1]:+.4f}, "
                  f"{'above' if passed else 'not above'} the required {threshold:.4g}")
    else:
        passed = improvement[1] >= -threshold
        if improvement[1] >= 0:
            reason = (f"even the worst end of the {_pct(comparison)} interval is {improvement[1]:.4f} better than the "
                      "base")
        else:
            reason = (f"at worst the fine-tuned {base_fields['name']} is {-improvement[1]:.4f} {worse} than the "
                      f"base's ({_pct(comparison)} interval), {'within' if passed else 'beyond'} the allowed "
                      f"{threshold:.4g}")
    return RuleResult(**base_fields, threshold=threshold, threshold_text=text, passed=passed, reason=reason,
                      delta=[point, low, high], improvement=improvement, decisive=decisive)


def _row(comparison: Comparison | None, key: str) -> MetricComparison | None:
    if comparison is None:
        return None
    return next((r for r in comparison.metrics if r.key == key), None)


def _pct(comparison: Comparison | None) -> str:
    return f"{comparison.confidence * 100:g}%" if comparison is not None else "95%"


def run_verdict(cfg: RunConfig, record: RunRecord) -> Verdict | None:
    """The verdict of the run's ``compare.require`` rules (None without rules)."""
    if not cfg.compare.require:
        return None
    split = cfg.evaluation.split
    comparisons: dict[str, Comparison | None] = {split: record.comparison}
    missing = {split: _why_no_comparison(record.base_evaluation, record.comparison)}
    if record.general is not None:
        comparisons[GENERAL] = record.general.comparison
        missing[GENERAL] = record.general.note or _why_no_comparison(record.general.base,
                                                                      record.general.comparison)
    return judge(cfg.compare.require, comparisons, split, {k: v for k, v in missing.items() if v})


def _why_no_comparison(base: object, comparison: Comparison | None) -> str:
    if comparison is not None:
        return ""
    extra = getattr(base, "extra", None) or {}
    if base is not None and extra.get("meaningful") is False:
        return "the base model's numbers are not meaningful (its head is newly initialised), so there is no interval"
    return "the comparison with the base model did not run"
