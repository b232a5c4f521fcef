"""The ship gate's verdict: each rule of ``compare.require`` with the interval it was judged on."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RuleResult:
    """One rule judged on the comparison's paired interval of fine-tuned minus base.

    ``improvement`` is the delta turned so that positive is better (negated for lower-is-better metrics such as
    perplexity), as ``[point, low, high]``. Superiority passes when its low end exceeds ``threshold``;
    non-inferiority when its low end is at least ``-threshold``.
    """

    metric: str  # the comparison row's key, e.g. "accuracy"
    name: str  # its display name
    data: str  # the evaluation split, or "general"
    kind: str  # "superiority" or "non-inferiority"
    threshold: float  # in the metric's units (a relative threshold already multiplied out)
    threshold_text: str  # as the config gave it, e.g. "0.01" or "5% of the base's 61.2"
    lower_is_better: bool
    passed: bool
    reason: str  # one sentence: why it passed or failed
    delta: list[float] | None = None  # [point, low, high] of fine-tuned minus base (None: no comparison)
    improvement: list[float] | None = None  # [point, low, high], positive = better
    decisive: bool | None = None  # False: the delta's interval includes 0


@dataclass
class Verdict:
    """All rules of the gate; ``passed`` only when every rule passes (`cardgen run`/`compare` exit 3 otherwise)."""

    passed: bool
    confidence: float | None
    rules: list[RuleResult] = field(default_factory=list)
