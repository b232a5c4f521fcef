"""The ship gate on the command line: the verdict's table, and exit code 3 when a rule of the gate fails."""

from __future__ import annotations

import sys

from cardgen.record import Verdict

GATE_FAILED = 3  # `cardgen run` and `cardgen compare` exit with it when a compare.require rule fails


def print_verdict(verdict: Verdict) -> None:
    """The verdict as a table on the terminal."""
    from rich.markup import escape

    from cardgen.card.format import format_interval
    from cardgen.card.verdict import rule_note, rule_text
    from cardgen.console import print_table, print_text

    ci = f"{verdict.confidence * 100:g}% CI" if verdict.confidence else "CI"
    print_table("Verdict (compare.require)", ["Rule", f"change [{ci}]", "result", "why"],
                [(escape(rule_text(r)), format_interval(r.delta, signed=True) if r.delta else "—",
                  "pass" if r.passed else "FAIL", escape(rule_note(r))) for r in verdict.rules])
    failed = sum(not r.passed for r in verdict.rules)
    print_text(f"Verdict: {'FAIL' if failed else 'pass'} ({len(verdict.rules) - failed} of {len(verdict.rules)} "
               "rules hold)")


def exit_on_verdict(verdict: Verdict | None, quiet: bool = False) -> None:
    """Show the verdict (unless ``quiet``: --json carries it) and exit 3 when it failed."""
    if verdict is None:
        return
    if not quiet:
        print_verdict(verdict)
    if not verdict.passed:
        sys.exit(GATE_FAILED)
