"""``compare.require``: the ship gate's rules, checked against the task's metrics where the config is loaded.

A rule is superiority (``min_delta``: the lower bound of the improvement's interval must clear it) or
non-inferiority (``max_worse``: the improvement's interval may reach at most that far below 0). Thresholds are in
the metric's own units, or with ``relative: true`` a share of the base model's value (``max_worse: 0.05``: 5%).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# The metrics the comparison gives intervals for, per task (the keys of its rows).
GATE_METRICS = {
    "text-classification": ("accuracy", "f1_macro", "precision_macro", "recall_macro"),
    "causal-lm": ("perplexity", "bits_per_byte", "loss"),
    "masked-lm": ("perplexity", "loss"),
    "question-answering": ("exact_match", "f1"),
}
GENERAL = "general"  # `data: general` names the forgetting check's set (data.general)


@dataclass(frozen=True)
class RequireRule:
    """One rule of the ship gate, e.g. ``{metric: accuracy, min_delta: 0.01}``."""

    metric: str = ""
    data: str | None = None  # None: the evaluation split; "general": the forgetting check's set (data.general)
    min_delta: float | None = None  # superiority: the improvement's lower bound must exceed this
    max_worse: float | None = None  # non-inferiority: the improvement's lower bound must stay >= -this
    relative: bool = False  # the threshold is a share of the base model's value (0.05: 5% of it)

    def _checks(self) -> list[tuple[str, str]]:
        if not self.metric:
            return [("metric", "is required: the metric the rule is about, e.g. accuracy or perplexity")]
        given = [k for k in ("min_delta", "max_worse") if getattr(self, k) is not None]
        if not given:
            return [("min_delta", "or max_worse must be given: min_delta for superiority, max_worse for "
                                  "non-inferiority")]
        if len(given) > 1:
            return [("min_delta", "and max_worse exclude each other: give one (min_delta for superiority, max_worse "
                                  "for non-inferiority)")]
        value = getattr(self, given[0])
        if not math.isfinite(value) or value < 0:
            return [(given[0], f"must be a number >= 0 (got {value})")]
        return []

    @property
    def kind(self) -> str:
        """``"superiority"`` or ``"non-inferiority"``."""
        return "superiority" if self.min_delta is not None else "non-inferiority"

    @property
    def threshold(self) -> tuple[float, bool]:
        """``(amount, relative)`` of the rule's threshold (relative: a share of the base's value)."""
        value = self.min_delta if self.min_delta is not None else self.max_worse
        return float(value or 0.0), self.relative


def rule_problems(task: str, rules: list[RequireRule], split: str, has_general: bool, compare_enabled: bool,
                  trained: bool) -> list[tuple[str, str]]:
    """What is wrong with ``compare.require`` for this run: a metric the task has no interval for, a data set the
    run does not evaluate, or no comparison at all. ``(key, message)`` pairs, as config checks return them."""
    if not rules:
        return []
    if not compare_enabled:
        return [("compare.require", "needs the comparison with the base model, but compare.enabled is false")]
    if not trained:
        return [("compare.require", "needs training: without it there is no base model to compare with "
                                    "(--no-train or training: null)")]
    metrics = GATE_METRICS.get(task, ())
    for i, rule in enumerate(rules):
        key = f"compare.require[{i}]"
        if rule.metric not in metrics:
            return [(f"{key}.metric", f"{rule.metric!r} is not a metric of {task}; the comparison has intervals for "
                                      f"{', '.join(metrics)}")]
        data = rule.data or split
        if data == GENERAL and not has_general:
            return [(f"{key}.data", "is general, but the config has no data.general (the held-out set outside the "
                                    "training domain)")]
        if data not in (split, GENERAL):
            return [(f"{key}.data", f"must be {split!r} (the evaluation split) or 'general' (got {rule.data!r})")]
    return []


RULE_SYNTAX = re.compile(r"^\s*([\w.-]+)\s*:\s*(min_delta|max_worse)\s*=\s*([0-9.eE+-]+)\s*(%?)\s*$")


def parse_rule(text: str, flag: str = "--require") -> RequireRule:
    """A rule written on the command line: ``METRIC:min_delta=X`` or ``METRIC:max_worse=X``; ``X%`` is a share of
    the base model's value.

    Raises:
        ConfigError: naming ``flag`` and the expected form.
    """
    from cardgen.errors import ConfigError

    match = RULE_SYNTAX.match(text)
    hint = "write e.g. --require accuracy:min_delta=0.01 or --require perplexity:max_worse=5%"
    try:
        value = float(match.group(3)) if match else float("nan")
    except ValueError:
        value = float("nan")
    if match is None or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{flag} {text!r} is not METRIC:min_delta=X or METRIC:max_worse=X with X >= 0", hint)
    metric, kind, _, percent = match.groups()
    amount = value / 100 if percent else value
    return RequireRule(metric=metric, relative=bool(percent), min_delta=amount if kind == "min_delta" else None,
                       max_worse=amount if kind == "max_worse" else None)
