"""Permutation p-values at their floor read as a bound ("< 0.0001 (the smallest 10,000 permutations can give)") in
the card, `compare --markdown` and the terminal table, while run.json keeps the exact 1 / (1 + N)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cardgen.card.comparison import table_rows
from cardgen.card.format import format_p
from cardgen.card.render import render_markdown
from cardgen.compare.classification import classification_comparison
from cardgen.compare.documents import score_comparison
from cardgen.record import EvaluationRecord, to_dict

FLOOR_10K = "< 0.0001 (the smallest 10,000 permutations can give)"


def _clear_gain(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < 0.6, y, 1 - y)
    b = np.where(rng.random(n) < 0.9, y, 1 - y)
    return y, a, b


def test_format_p_says_bound_at_the_floor_only() -> None:
    assert format_p(1 / 1001, 1000) == "< 0.001 (the smallest 1,000 permutations can give)"
    assert format_p(1 / 10_001, 10_000) == FLOOR_10K
    assert format_p(2 / 1001, 1000) == "0.0020"  # one permutation reached the effect: an estimate
    assert format_p(1 / 1001) == "0.0010"  # no permutation count: an exact test's value as it is
    assert format_p(4.8e-9, 10_000) == "4.8e-09"  # below the floor: not a permutation p-value
    assert format_p(1 / 2001, 2000) == "< 0.0005 (the smallest 2,000 permutations can give)"


def test_classification_comparison_defaults_to_10000_permutations_and_prints_the_bound() -> None:
    y, a, b = _clear_gain()
    c = classification_comparison(y, a, b, ["neg", "pos"], texts=["t"] * len(y), split="test", base_model="base",
                                  fine_tuned_model="ft", method="zero-shot", n_resamples=200)
    assert c.permutations == 10_000
    f1 = next(r for r in c.metrics if r.key == "f1_macro")
    assert f1.p_value == pytest.approx(1 / 10_001, rel=1e-12)  # the record keeps the exact floor
    assert to_dict(c)["metrics"][1]["p_value"] == f1.p_value
    assert json.loads(json.dumps(to_dict(c)))["summary"]["f1_macro"]["p_value"] == f1.p_value
    rows = {row[0]: row for row in table_rows(c)}  # what `cardgen compare` prints on the terminal
    assert rows["F1 (macro)"][4] == FLOOR_10K and rows["F1 (macro)"][5] == "paired permutation"
    assert rows["Accuracy"][4] != FLOOR_10K and rows["Accuracy"][5] == "exact McNemar"  # an exact test's value
    md = render_markdown(c)  # `cardgen compare --markdown` and the card's section
    assert f"| {FLOOR_10K} | paired permutation |" in md
    assert "0.0001 |" not in md.replace(FLOOR_10K, "")  # the floor never prints as an exact value


def test_per_document_comparison_defaults_to_10000_permutations_and_prints_the_bound() -> None:
    rng = np.random.default_rng(1)
    tokens = rng.integers(20, 60, 300)
    nll_base = tokens * rng.normal(5.0, 0.3, 300)
    evals = [EvaluationRecord(model=name, split="test", num_examples=300, metrics={},
                              losses=list(map(float, tokens * shift + nll_base)),
                              extra={"tokens": tokens.tolist()}) for name, shift in (("base", 0.0), ("ft", -1.0))]
    c = score_comparison("causal-lm", *evals, base_model="b", fine_tuned_model="f", n_resamples=200,
                         confidence=0.95, seed=0)
    assert c.permutations == 10_000
    ppl = next(r for r in c.metrics if r.key == "perplexity")
    assert ppl.p_value == pytest.approx(1 / 10_001, rel=1e-12)
    md = render_markdown(c)
    assert f"| {FLOOR_10K} |" in md and "10,000 permutations, two-sided" in md
    noisy = score_comparison("causal-lm", evals[0], evals[0], base_model="b", fine_tuned_model="f",
                             n_resamples=200, confidence=0.95, seed=0, n_permutations=500)
    assert noisy.permutations == 500 and "| 1.0000 |" in render_markdown(noisy)
