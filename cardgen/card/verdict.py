"""The card's "Verdict" section: each rule of the ship gate, the interval it was judged on, pass or fail."""

from __future__ import annotations

from typing import Any

from cardgen.card.format import format_interval, md_escape
from cardgen.record import RuleResult, Verdict

NOT_DECISIVE = "the interval includes 0: not decisive"


def rule_text(rule: RuleResult) -> str:
    """The rule in words, e.g. "Accuracy on test must improve by more than 0.01 (superiority)"."""
    where = f"{rule.name} on {'the general set' if rule.data == 'general' else rule.data}"
    better = "fall by" if rule.lower_is_better else "improve by"
    if rule.kind == "superiority":
        return f"{where} must {better} more than {rule.threshold_text} (superiority)"
    return f"{where} may be worse than the base's by at most {rule.threshold_text} (non-inferiority)"


def rule_note(rule: RuleResult) -> str:
    """Why the rule passed or failed, and "not decisive" when the interval of the change includes 0."""
    note = rule.reason
    if rule.decisive is False:
        note += f"; {NOT_DECISIVE}"
    return note[0].upper() + note[1:]


def verdict_context(verdict: Verdict | None) -> dict[str, Any] | None:
    """Rows of the Verdict section (None when the config has no ``compare.require``)."""
    if verdict is None:
        return None
    failed = [r for r in verdict.rules if not r.passed]
    n = len(verdict.rules)
    if failed:
        summary = (f"**Fails:** {len(failed)} of {n} rule{'s' * (n != 1)} "
                   f"{'do' if len(failed) != 1 else 'does'} not hold, so `cardgen run` exited with code 3 "
                   "(the outputs were written all the same).")
    else:
        summary = ("**Passes:** the rule of `compare.require` holds." if n == 1
                   else f"**Passes:** all {n} rules of `compare.require` hold.")
    ci = f"{verdict.confidence * 100:g}%" if verdict.confidence else "95%"
    rows = [{"rule": md_escape(rule_text(r)),
             "change": format_interval(r.delta, signed=True) if r.delta else "—",
             "result": "pass" if r.passed else "**FAIL**",
             "note": md_escape(rule_note(r))} for r in verdict.rules]
    return {"passed": verdict.passed, "summary": summary, "confidence": ci, "rows": rows}
