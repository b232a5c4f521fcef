"""Two classifiers' predictions on the same examples -> Comparison: intervals, deltas, paired tests, flips.

Every interval comes from the same seeded bootstrap resamples, so base, fine-tuned and delta are paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cardgen.errors import DataError
from cardgen.record import (
    Comparison,
    FlipExample,
    MetricComparison,
    ProbeRecord,
)

if TYPE_CHECKING:
    import pandas as pd



FLIP_EXAMPLES = 5  # examples shown each way


MACRO_METRICS = (("accuracy", "Accuracy"), ("f1_macro", "F1 (macro)"), ("precision_macro", "Precision (macro)"),
                 ("recall_macro", "Recall (macro)"))


CLASS_METRICS = (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"))


def example_texts(frame: pd.DataFrame) -> list[str]:
    texts = [str(t) for t in frame["text"].tolist()]
    if "text_pair" in frame:
        texts = [f"{t} / {p}" for t, p in zip(texts, frame["text_pair"].tolist(), strict=True)]
    return texts


def classification_comparison(
    labels: Sequence[int],
    base_predictions: Sequence[int],
    ft_predictions: Sequence[int],
    label_names: Sequence[str],
    *,
    texts: Sequence[str],
    split: str,
    base_model: str,
    fine_tuned_model: str,
    method: str,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    n_permutations: int | None = None,
    probe: ProbeRecord | None = None,
    max_length: int | None = None,
) -> Comparison:
    """Intervals, deltas, paired tests and flips of two models' predictions on the same examples.

    Every interval is a percentile bootstrap over examples with ``seed``: the same resampled examples for the
    base, the fine-tuned model and their delta. Accuracy is tested with the exact McNemar test, the macro
    metrics with a paired permutation test (``n_permutations``, default ``compare.permutations``' default, 10,000).

    Args:
        labels: Gold label ids.
        base_predictions: The base model's predicted ids, same order.
        ft_predictions: The fine-tuned model's predicted ids, same order.
        label_names: Class names in id order.
        texts: The examples' texts (for the flip examples).
        split: Name of the evaluation split.
        base_model: What the base is (name or path).
        fine_tuned_model: What the fine-tuned model is.
        method: How the base was evaluated (``"linear-probe"`` or ``"zero-shot"``).
        n_resamples: Bootstrap resamples.
        confidence: Coverage of the intervals.
        seed: Seed of the resampling and permutations.
        n_permutations: Permutations behind the permutation p-values.
        probe: How the probe was fitted, when the base is a linear probe.
        max_length: The truncation length both models used.
    """
    from cardgen.stats import DEFAULT_PERMUTATIONS
    from cardgen.stats.comparison import COUNT_METHOD, classification_comparison_stats
    from cardgen.stats.paired import flips

    y = np.asarray(labels, dtype=np.int64)
    a = np.asarray(base_predictions, dtype=np.int64)
    b = np.asarray(ft_predictions, dtype=np.int64)
    if not (len(y) == len(a) == len(b) == len(texts)):
        raise DataError(f"the two models were evaluated on different numbers of examples ({len(a)} and {len(b)})",
                        "evaluate both on the same split")
    names = [str(n) for n in label_names]
    n_perm = n_permutations or DEFAULT_PERMUTATIONS
    st = classification_comparison_stats(y, a, b, len(names), names, n_resamples=n_resamples,
                                         confidence=confidence, seed=seed, n_permutations=n_perm)
    base_iv, ft_iv, mcnemar = st.base, st.fine_tuned, st.mcnemar
    acc = st.deltas["accuracy"]
    rows: list[MetricComparison] = [MetricComparison(
        "accuracy", "Accuracy", _trio(base_iv.accuracy), _trio(ft_iv.accuracy), [acc.delta, acc.low, acc.high],
        mcnemar.p_value, mcnemar.test)]
    for key, name in MACRO_METRICS[1:]:
        test = st.deltas[key]
        rows.append(MetricComparison(key, name, _trio(getattr(base_iv, key)), _trio(getattr(ft_iv, key)),
                                     [test.delta, test.low, test.high], test.p_value,
                                     f"{test.test}, {test.n_permutations:,} permutations"))
    per_class = _per_class_rows(names, base_iv, ft_iv, st.per_class_deltas)
    wrong_to_right, right_to_wrong = flips(y, a, b)

    def examples(indices: list[int]) -> list[FlipExample]:
        return [FlipExample(index=i, text=shorten(texts[i]), label=names[y[i]], base_prediction=names[a[i]],
                            fine_tuned_prediction=names[b[i]]) for i in indices[:FLIP_EXAMPLES]]

    summary = _summary(rows, method, len(y), len(wrong_to_right), len(right_to_wrong))
    return Comparison(
        task="text-classification", split=split, num_examples=int(len(y)), base_model=base_model,
        fine_tuned_model=fine_tuned_model, method=method, confidence=confidence, bootstrap_samples=n_resamples,
        permutations=n_perm, seed=seed, interval_method=COUNT_METHOD, metrics=rows, per_class=per_class,
        tests={r.key: r.test or "" for r in rows}, wrong_to_right=len(wrong_to_right),
        right_to_wrong=len(right_to_wrong), wrong_to_right_examples=examples(wrong_to_right),
        right_to_wrong_examples=examples(right_to_wrong), probe=probe, max_length=max_length, summary=summary,
    )


def _trio(iv: Any) -> list[float]:
    return [float(iv.point), float(iv.low), float(iv.high)]


def _per_class_rows(names: list[str], base_iv: Any, ft_iv: Any,
                    deltas: dict[str, dict[str, Any]]) -> list[MetricComparison]:
    """Per-class precision, recall and F1 of both models with the interval of their difference."""
    rows: list[MetricComparison] = []
    for label in names:
        for kind, name in CLASS_METRICS:
            d = deltas[label][kind]
            rows.append(MetricComparison(
                kind, name, _trio(getattr(base_iv.per_class[label], kind)),
                _trio(getattr(ft_iv.per_class[label], kind)), [d.delta, d.low, d.high], label=label,
                support=base_iv.per_class[label].support,
            ))
    return rows


def _summary(rows: list[MetricComparison], method: str, n: int, wrong_to_right: int,
             right_to_wrong: int) -> dict[str, Any]:
    """The comparison's summary for ``--json`` and CI: accuracy and macro-F1 with their deltas, and the flips."""
    by_key = {r.key: r for r in rows}
    summary: dict[str, Any] = {"method": method, "num_examples": int(n)}
    for key in ("accuracy", "f1_macro"):
        r = by_key[key]
        summary[key] = {"base": r.base[0], "fine_tuned": r.fine_tuned[0], "delta": r.delta[0],
                        "delta_low": r.delta[1], "delta_high": r.delta[2], "p_value": r.p_value}
    summary["wrong_to_right"] = wrong_to_right
    summary["right_to_wrong"] = right_to_wrong
    return summary


FLIP_TEXT_CHARS = 160


def shorten(text: str, limit: int = FLIP_TEXT_CHARS) -> str:
    """One line of at most ``limit`` characters, cut at a word boundary with an ellipsis."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"
