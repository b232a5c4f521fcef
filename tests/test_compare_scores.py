"""LM and QA comparisons: intervals and paired tests from per-document scores (cardgen.compare_scores)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cardgen.compare.documents import score_comparison
from cardgen.record import Comparison, EvaluationRecord
from cardgen.stats.intervals import perplexity_bootstrap
from cardgen.stats.metrics import perplexity_from_nll


def lm_eval(nll: np.ndarray, tokens: np.ndarray, nbytes: np.ndarray, name: str) -> EvaluationRecord:
    total = float(nll.sum())
    return EvaluationRecord(model=name, split="test", num_examples=len(nll),
                            metrics={"perplexity": math.exp(total / tokens.sum()), "loss": total / tokens.sum(),
                                     "bits_per_byte": total / math.log(2) / nbytes.sum()},
                            losses=nll.tolist(), extra={"tokens": tokens.tolist(), "bytes": nbytes.tolist()})


def documents(seed: int, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, 60, 80).astype(float)
    nll = tokens * (4.0 + shift + rng.normal(0, 0.3, 80))
    return nll, tokens, tokens * 4.2


def compare(base: EvaluationRecord, ft: EvaluationRecord, task: str = "causal-lm") -> Comparison:
    return score_comparison(task, base, ft, base_model="b", fine_tuned_model="f", n_resamples=400, confidence=0.95,
                            seed=3)


def test_points_are_the_evaluations_numbers_and_intervals_the_perplexity_bootstrap() -> None:
    nll_b, tok, nbytes = documents(0, 0.0)
    nll_f = nll_b - tok * 0.25  # every document better by 0.25 nats per token
    base, ft = lm_eval(nll_b, tok, nbytes, "base"), lm_eval(nll_f, tok, nbytes, "fine-tuned")
    c = compare(base, ft)
    rows = {r.key: r for r in c.metrics}
    assert set(rows) == {"perplexity", "loss", "bits_per_byte"}
    for key, row in rows.items():
        assert row.base[0] == pytest.approx(base.metrics[key]) and row.fine_tuned[0] == pytest.approx(ft.metrics[key])
        assert row.delta[0] == pytest.approx(ft.metrics[key] - base.metrics[key])
        assert row.base[1] <= row.base[0] <= row.base[2]
    assert rows["loss"].delta[0] == pytest.approx(-0.25)
    assert rows["perplexity"].base[0] == pytest.approx(perplexity_from_nll(nll_b, tok))
    ci = perplexity_bootstrap(nll_b, tok, n_resamples=400, seed=3)
    assert rows["perplexity"].base[1:] == pytest.approx([ci.low, ci.high])
    # a uniform gain is significant: the whole delta interval is below zero, p at its floor (10,000 permutations
    # by default, independent of the 400 resamples)
    assert c.permutations == 10_000
    assert rows["perplexity"].delta[2] < 0 and rows["perplexity"].p_value == pytest.approx(1 / 10_001)


def test_a_model_against_itself_has_no_difference() -> None:
    nll, tok, nbytes = documents(1, 0.0)
    same = lm_eval(nll, tok, nbytes, "x")
    for row in compare(same, same).metrics:
        assert row.delta == [0.0, 0.0, 0.0] and row.p_value == 1.0


def test_noise_alone_is_not_significant() -> None:
    nll_b, tok, nbytes = documents(2, 0.0)
    nll_f = nll_b + np.random.default_rng(9).normal(0, 0.3, len(tok)) * tok  # no systematic change
    c = compare(lm_eval(nll_b, tok, nbytes, "b"), lm_eval(nll_f, tok, nbytes, "f"))
    ppl = next(r for r in c.metrics if r.key == "perplexity")
    assert ppl.p_value > 0.05 and ppl.delta[1] < 0 < ppl.delta[2]


def test_qa_scores_in_percent() -> None:
    exact_b, exact_f = [0, 0, 1, 0] * 10, [1, 1, 1, 0] * 10
    f1_b, f1_f = [0.2, 0.5, 1.0, 0.0] * 10, [1.0, 1.0, 1.0, 0.1] * 10

    def ev(exact: list[int], f1: list[float]) -> EvaluationRecord:
        return EvaluationRecord(model="m", split="test", num_examples=40,
                                metrics={"exact_match": 100 * np.mean(exact), "f1": 100 * np.mean(f1)},
                                extra={"exact": exact, "f1": f1})

    c = compare(ev(exact_b, f1_b), ev(exact_f, f1_f), task="question-answering")
    rows = {r.key: r for r in c.metrics}
    assert rows["exact_match"].base[0] == pytest.approx(25.0) and rows["exact_match"].fine_tuned[0] == 75.0
    assert rows["f1"].delta[0] == pytest.approx(100 * (np.mean(f1_f) - np.mean(f1_b)))
    assert rows["exact_match"].p_value < 0.01


def test_different_documents_are_refused() -> None:
    nll, tok, nbytes = documents(4, 0.0)
    with pytest.raises(ValueError, match="documents"):
        compare(lm_eval(nll, tok, nbytes, "b"), lm_eval(nll[:-1], tok[:-1], nbytes[:-1], "f"))
