"""Base versus fine-tuned for the LM and QA tasks: intervals and paired tests from per-document scores.

Both models were evaluated by the task's own code on the same documents (the same text stream and windows for a
causal LM, the same fixed masks for a masked LM, the same questions and windows for QA), and each evaluation keeps
its per-document sums in the run record. Every metric of these tasks is a function of a ratio of sums over
documents (perplexity = exp(sum NLL / sum tokens), bits per byte = sum NLL / ln 2 / sum bytes, EM and F1 = mean of
per-question scores), so one paired bootstrap over documents gives the intervals of base, fine-tuned and their
difference, and one paired permutation test (each document's two scores swapped with probability 1/2) the p-value.

Split from compare.py, which holds the classification comparison (probe, McNemar, flips).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from cardgen.record import Comparison, EvaluationRecord, MetricComparison

PERMUTATION_TEST = "paired permutation test over documents"
INTERVAL_METHOD = "percentile bootstrap over documents"


def _ratio(transform: Callable[[np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def stat(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return transform(num.sum(axis=-1) / den.sum(axis=-1))

    return stat


Series = dict[str, tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]]


def _identity(x: np.ndarray) -> np.ndarray:
    return x


# metric key -> (per-document numerator, per-document denominator, transform of the ratio of their sums)
def _lm_series(ev: EvaluationRecord) -> Series:
    nll = np.asarray(ev.losses, dtype=float)
    tokens = np.asarray(ev.extra["tokens"], dtype=float)
    series: Series = {"perplexity": (nll, tokens, np.exp), "loss": (nll, tokens, _identity)}
    if "bytes" in ev.extra:
        series["bits_per_byte"] = (nll, np.asarray(ev.extra["bytes"], dtype=float), lambda x: x / math.log(2))
    return series


def _qa_series(ev: EvaluationRecord) -> Series:
    ones = np.ones(len(ev.extra["exact"]))
    return {"exact_match": (np.asarray(ev.extra["exact"], dtype=float), ones, lambda x: 100 * x),
            "f1": (np.asarray(ev.extra["f1"], dtype=float), ones, lambda x: 100 * x)}


SERIES = {"causal-lm": _lm_series, "masked-lm": _lm_series, "question-answering": _qa_series}
NAMES = {"perplexity": "Perplexity", "loss": "Loss", "bits_per_byte": "Bits per byte", "exact_match": "Exact match",
         "f1": "F1"}


def supports(task: str) -> bool:
    """Whether :func:`score_comparison` knows the task."""
    return task in SERIES


def score_comparison(task: str, base: EvaluationRecord, fine_tuned: EvaluationRecord, *, base_model: str,
                     fine_tuned_model: str, n_resamples: int, confidence: float, seed: int) -> Comparison:
    """Intervals and paired tests of every per-document metric the two evaluations share.

    Args:
        task: "causal-lm", "masked-lm" or "question-answering".
        base: The base model's evaluation (per-document scores in ``losses`` / ``extra``).
        fine_tuned: The fine-tuned model's evaluation of the same documents.
        base_model: Name of the base checkpoint.
        fine_tuned_model: Name of the fine-tuned model.
        n_resamples: Bootstrap resamples and permutations.
        confidence: Coverage of the intervals.
        seed: Seed of the resampling.

    Raises:
        ValueError: If the two evaluations did not score the same documents.
    """
    from cardgen.metrics import bootstrap_ci, paired_ratio_test

    series_b, series_f = SERIES[task](base), SERIES[task](fine_tuned)
    rows = []
    for key in (k for k in NAMES if k in series_b and k in series_f):
        (num_b, den_b, transform), (num_f, den_f, _) = series_b[key], series_f[key]
        if len(num_b) != len(num_f):
            raise ValueError(f"base and fine-tuned scored {len(num_b)} and {len(num_f)} documents")
        stat = _ratio(transform)
        ci_b = bootstrap_ci(stat, num_b, den_b, n_resamples=n_resamples, confidence=confidence, seed=seed)
        ci_f = bootstrap_ci(stat, num_f, den_f, n_resamples=n_resamples, confidence=confidence, seed=seed)
        test = paired_ratio_test(num_b, den_b, num_f, den_f, transform, n_resamples=n_resamples, seed=seed,
                                 confidence=confidence)
        rows.append(MetricComparison(
            key=key, name=NAMES[key], base=[ci_b.point, ci_b.low, ci_b.high],
            fine_tuned=[ci_f.point, ci_f.low, ci_f.high], delta=[test.delta, test.low, test.high],
            p_value=test.p_value, test=PERMUTATION_TEST,
        ))
    summary: dict[str, Any] = {r.key: {"base": r.base[0], "fine_tuned": r.fine_tuned[0], "delta": r.delta[0],
                                       "p_value": r.p_value} for r in rows}
    return Comparison(
        task=task, split=fine_tuned.split, num_examples=len(series_f[rows[0].key][0]) if rows else 0,
        base_model=base_model, fine_tuned_model=fine_tuned_model, method="same-evaluation",
        confidence=confidence, bootstrap_samples=n_resamples, permutations=n_resamples, seed=seed,
        interval_method=INTERVAL_METHOD, metrics=rows, tests={r.key: PERMUTATION_TEST for r in rows},
        summary=summary,
    )
