"""Metrics, bootstrap intervals and paired significance tests (numpy/scipy/scikit-learn only; fast)."""

from __future__ import annotations

import dataclasses
import json
import math
from functools import partial

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from cardgen.stats import intervals as metrics
from cardgen.stats.intervals import (
    ClassificationIntervals,
    Interval,
    bootstrap_ci,
    classification_intervals,
    perplexity_bootstrap,
)
from cardgen.stats.metrics import (
    batched_accuracy,
    batched_confusion,
    batched_f1_macro,
    classification_metrics,
    perplexity_from_nll,
)
from cardgen.stats.paired import (
    McNemarResult,
    PairedTestResult,
    flips,
    mcnemar_exact,
    paired_bootstrap_test,
    perplexity_paired_test,
)


def _predictions(n: int, num_labels: int, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gold labels and predictions that are right with probability ``accuracy``."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_labels, size=n)
    wrong = rng.random(n) > accuracy
    preds = labels.copy()
    preds[wrong] = (labels[wrong] + rng.integers(1, num_labels, size=int(wrong.sum()))) % num_labels
    return labels, preds


def _table(a: int, b: int, c: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-example correctness for a 2x2 table: a both right, b base only, c fine-tuned only, d both wrong."""
    base = np.array([True] * a + [True] * b + [False] * c + [False] * d)
    ft = np.array([True] * a + [False] * b + [True] * c + [False] * d)
    return base, ft


def _exact_two_sided(b: int, c: int) -> float:
    """Textbook exact McNemar p-value: twice the smaller binomial tail of Bin(b + c, 1/2), capped at 1."""
    n = b + c
    k = min(b, c)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


# ---------------------------------------------------------------------------------------------- existing metrics


def test_classification_metrics_keys_unchanged() -> None:
    out = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], 2)
    assert set(out) == {
        "accuracy",
        "f1_macro",
        "precision_macro",
        "recall_macro",
        "f1_positive",
        "precision_positive",
        "recall_positive",
    }
    assert out["accuracy"] == 0.75


# ---------------------------------------------------------------------------------------------- McNemar


def test_mcnemar_textbook_value() -> None:
    base, ft = _table(a=20, b=1, c=9, d=5)
    result = mcnemar_exact(base, ft)
    assert (result.b, result.c) == (1, 9)
    # 2 * (C(10,0) + C(10,1)) / 2**10 = 22 / 1024
    assert result.p_value == pytest.approx(0.021484375, abs=1e-15)


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (2, 8, 2 * (1 + 10 + 45) / 1024),  # 0.109375
        (3, 12, 2 * (1 + 15 + 105 + 455) / 2**15),  # 0.03515625
        (0, 6, 2 / 64),
        (6, 0, 2 / 64),
        (5, 5, 1.0),
        (4, 5, 1.0),
        (0, 0, 1.0),
    ],
)
def test_mcnemar_by_hand(b: int, c: int, expected: float) -> None:
    base, ft = _table(a=7, b=b, c=c, d=3)
    result = mcnemar_exact(base, ft)
    assert (result.b, result.c) == (b, c)
    assert result.p_value == pytest.approx(expected, abs=1e-15)
    assert result.p_value == pytest.approx(_exact_two_sided(b, c), abs=1e-15)


def test_mcnemar_ignores_concordant_pairs_and_is_symmetric() -> None:
    base, ft = _table(a=1000, b=4, c=15, d=300)
    few_base, few_ft = _table(a=0, b=4, c=15, d=0)
    assert mcnemar_exact(base, ft).p_value == mcnemar_exact(few_base, few_ft).p_value
    assert mcnemar_exact(base, ft).p_value == mcnemar_exact(ft, base).p_value
    assert mcnemar_exact(base, ft).p_value == pytest.approx(_exact_two_sided(4, 15), abs=1e-15)


# ---------------------------------------------------------------------------------------------- vectorised metrics


@pytest.mark.parametrize("seed", range(5))
def test_batched_f1_macro_equals_sklearn_with_absent_classes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_labels = 6
    # Class 4 is never predicted, class 3 never gold, class 5 absent from both.
    labels = rng.choice([0, 1, 2, 4], size=(8, 60))
    preds = rng.choice([0, 1, 2, 3], size=(8, 60))
    ours = batched_f1_macro(labels, preds, num_labels)
    assert ours.shape == (8,)
    for row in range(8):
        expected = f1_score(
            labels[row], preds[row], labels=list(range(num_labels)), average="macro", zero_division=0
        )
        assert ours[row] == pytest.approx(expected, abs=1e-12)
        assert ours[row] == pytest.approx(
            classification_metrics(labels[row], preds[row], num_labels)["f1_macro"], abs=1e-12
        )
    np.testing.assert_allclose(batched_accuracy(labels, preds), (labels == preds).mean(axis=1))


def test_batched_f1_macro_equals_sklearn_default_when_all_classes_occur() -> None:
    labels, preds = _predictions(500, 4, 0.6, seed=3)
    assert batched_f1_macro(labels, preds, 4)[0] == pytest.approx(f1_score(labels, preds, average="macro"))


def test_batched_confusion_matches_counts() -> None:
    labels = np.array([[0, 1, 2, 2], [1, 1, 1, 0]])
    preds = np.array([[0, 2, 2, 1], [1, 0, 1, 0]])
    cm = batched_confusion(labels, preds, 3)
    assert cm.shape == (2, 3, 3)
    assert cm[0].tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    assert cm[1].tolist() == [[1, 0, 0], [1, 2, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        batched_confusion([0, 3], [0, 1], 3)


# ---------------------------------------------------------------------------------------------- bootstrap intervals


def test_bootstrap_ci_reproducible_and_seed_dependent() -> None:
    labels, preds = _predictions(400, 3, 0.7, seed=1)
    first = bootstrap_ci(batched_accuracy, labels, preds, n_resamples=500, seed=7)
    again = bootstrap_ci(batched_accuracy, labels, preds, n_resamples=500, seed=7)
    other = bootstrap_ci(batched_accuracy, labels, preds, n_resamples=500, seed=8)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert first.point == other.point == pytest.approx(accuracy_score(labels, preds))
    assert first.low <= first.point <= first.high
    assert first.high - first.low > 0.02  # 400 examples: the interval is a few points wide
    point, low, high = first
    assert (point, low, high) == (first.point, first.low, first.high)


def test_bootstrap_ci_vectorised_equals_looped_sklearn() -> None:
    labels, preds = _predictions(150, 4, 0.5, seed=2)
    fast = bootstrap_ci(partial(batched_f1_macro, num_labels=4), labels, preds, n_resamples=60, seed=3)
    slow = bootstrap_ci(
        partial(f1_score, labels=list(range(4)), average="macro", zero_division=0),
        labels,
        preds,
        n_resamples=60,
        seed=3,
        vectorized=False,
    )
    assert fast.point == pytest.approx(slow.point, abs=1e-12)
    assert fast.low == pytest.approx(slow.low, abs=1e-12)
    assert fast.high == pytest.approx(slow.high, abs=1e-12)


def test_bootstrap_blocks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    labels, preds = _predictions(300, 3, 0.7, seed=4)
    whole = bootstrap_ci(batched_accuracy, labels, preds, n_resamples=200, seed=5)
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 300 * 7)  # blocks of 7 resamples
    blocked = bootstrap_ci(batched_accuracy, labels, preds, n_resamples=200, seed=5)
    assert whole == blocked


def test_classification_intervals_points_match_sklearn() -> None:
    labels, preds = _predictions(600, 3, 0.75, seed=6)
    names = ["neg", "neu", "pos"]
    out = classification_intervals(labels, preds, 3, names, n_resamples=300, confidence=0.9, seed=1)
    assert isinstance(out, ClassificationIntervals)
    base = classification_metrics(labels, preds, 3)
    assert out.accuracy.point == pytest.approx(base["accuracy"])
    assert out.f1_macro.point == pytest.approx(base["f1_macro"])
    assert out.precision_macro.point == pytest.approx(base["precision_macro"])
    assert out.recall_macro.point == pytest.approx(base["recall_macro"])
    p, r, f, support = precision_recall_fscore_support(labels, preds, labels=[0, 1, 2], zero_division=0)
    assert list(out.per_class) == names
    for i, name in enumerate(names):
        cls = out.per_class[name]
        assert cls.precision.point == pytest.approx(p[i])
        assert cls.recall.point == pytest.approx(r[i])
        assert cls.f1.point == pytest.approx(f[i])
        assert cls.support == support[i]
        for iv in (cls.precision, cls.recall, cls.f1):
            assert iv.low <= iv.point <= iv.high
    for iv in (out.accuracy, out.f1_macro):
        assert iv.low <= iv.point <= iv.high
    assert (out.n_resamples, out.confidence, out.seed, out.num_examples) == (300, 0.9, 1, 600)
    # Same seed: accuracy interval equals bootstrap_ci's, because the resampled indices are the same.
    alone = bootstrap_ci(batched_accuracy, labels, preds, n_resamples=300, confidence=0.9, seed=1)
    assert out.accuracy == alone


def test_classification_intervals_reproducible_and_seed_dependent() -> None:
    labels, preds = _predictions(300, 2, 0.8, seed=9)
    a = classification_intervals(labels, preds, 2, ["a", "b"], n_resamples=200, seed=0)
    b = classification_intervals(labels, preds, 2, ["a", "b"], n_resamples=200, seed=0)
    c = classification_intervals(labels, preds, 2, ["a", "b"], n_resamples=200, seed=1)
    assert dataclasses.asdict(a) == dataclasses.asdict(b)
    assert a.f1_macro != c.f1_macro
    assert a.f1_macro.point == c.f1_macro.point


def test_wider_confidence_gives_wider_interval() -> None:
    labels, preds = _predictions(300, 2, 0.8, seed=10)
    narrow = bootstrap_ci(batched_accuracy, labels, preds, confidence=0.5)
    wide = bootstrap_ci(batched_accuracy, labels, preds, confidence=0.99)
    assert wide.low < narrow.low and narrow.high < wide.high


# ---------------------------------------------------------------------------------------------- paired tests


@pytest.mark.parametrize("metric", [batched_accuracy, partial(batched_f1_macro, num_labels=3)])
def test_model_compared_with_itself(metric) -> None:
    labels, preds = _predictions(500, 3, 0.7, seed=11)
    result = paired_bootstrap_test(metric, labels, preds, preds.copy(), n_resamples=400, seed=0)
    assert (result.delta, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert mcnemar_exact(preds == labels, preds == labels).p_value == 1.0
    first = classification_intervals(labels, preds, 3, n_resamples=300, seed=2)
    second = classification_intervals(labels, preds.copy(), 3, n_resamples=300, seed=2)
    assert dataclasses.asdict(first) == dataclasses.asdict(second)


def test_paired_test_detects_a_real_gain() -> None:
    labels, base = _predictions(800, 2, 0.6, seed=12)
    _, ft = _predictions(800, 2, 0.85, seed=12)  # same labels (same seed), more right
    f1 = partial(batched_f1_macro, num_labels=2)
    delta, low, high, p_value = paired_bootstrap_test(f1, labels, base, ft, n_resamples=1000, seed=0)
    expected = f1_score(labels, ft, average="macro") - f1_score(labels, base, average="macro")
    assert delta == pytest.approx(expected)
    assert 0 < low <= delta <= high
    assert p_value == pytest.approx(1 / 1001)  # no permutation reaches the observed gain
    # And the reverse direction: same p, negated effect.
    reverse = paired_bootstrap_test(f1, labels, ft, base, n_resamples=1000, seed=0)
    assert reverse.delta == pytest.approx(-delta)
    assert reverse.p_value == p_value


def test_paired_test_agrees_with_mcnemar_when_no_clear_difference() -> None:
    labels, base = _predictions(400, 2, 0.7, seed=13)
    right = np.flatnonzero(base == labels)
    wrong = np.flatnonzero(base != labels)
    ft = base.copy()
    ft[right[:15]] = 1 - ft[right[:15]]  # 15 right -> wrong
    ft[wrong[:20]] = 1 - ft[wrong[:20]]  # 20 wrong -> right
    exact = mcnemar_exact(base == labels, ft == labels)
    assert (exact.b, exact.c) == (15, 20)
    assert exact.p_value == pytest.approx(_exact_two_sided(15, 20))
    result = paired_bootstrap_test(batched_accuracy, labels, base, ft, n_resamples=2000, seed=0)
    assert result.delta == pytest.approx(5 / 400)
    assert result.low < 0.0 < result.high
    # For accuracy the permutation test and McNemar test the same hypothesis: similar p-values (about 0.5).
    assert result.p_value == pytest.approx(exact.p_value, abs=0.06)
    assert result.n_permutations == 10_000  # a table metric's count-based test: 10,000 permutations by default


# ---------------------------------------------------------------------------------------------- perplexity


def test_perplexity_is_token_weighted() -> None:
    nll = np.array([10.0, 2.0])  # doc 1: 10 tokens at 1 nat each; doc 2: 1 token at 2 nats
    tokens = np.array([10, 1])
    ppl = perplexity_from_nll(nll, tokens)
    assert ppl == pytest.approx(math.exp(12 / 11))
    mean_of_doc_ppl = float(np.mean(np.exp(nll / tokens)))  # (e + e^2) / 2: overweights the short doc
    assert abs(ppl - mean_of_doc_ppl) > 1.0
    with pytest.raises(ValueError):
        perplexity_from_nll([1.0], [0])
    with pytest.raises(ValueError):
        perplexity_from_nll([1.0, 2.0], [3])


def _docs(n: int, seed: int, nats_per_token: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, 400, size=n)
    nll = tokens * rng.normal(nats_per_token, 0.3, size=n).clip(0.1)
    return nll, tokens


def test_perplexity_bootstrap() -> None:
    nll, tokens = _docs(200, seed=0, nats_per_token=3.0)
    iv = perplexity_bootstrap(nll, tokens, n_resamples=500, seed=0)
    assert iv.point == pytest.approx(math.exp(nll.sum() / tokens.sum()))
    assert iv.low < iv.point < iv.high
    assert iv == perplexity_bootstrap(nll, tokens, n_resamples=500, seed=0)
    assert iv != perplexity_bootstrap(nll, tokens, n_resamples=500, seed=1)


def test_perplexity_paired_test() -> None:
    nll_a, tokens = _docs(150, seed=1, nats_per_token=3.0)
    same = perplexity_paired_test(nll_a, nll_a.copy(), tokens, n_resamples=300, seed=0)
    assert (same.delta, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    nll_b = nll_a - 0.2 * tokens  # fine-tuned: 0.2 nats per token better on every document
    better = perplexity_paired_test(nll_a, nll_b, tokens, n_resamples=500, seed=0)
    expected = perplexity_from_nll(nll_b, tokens) - perplexity_from_nll(nll_a, tokens)
    assert better.delta == pytest.approx(expected)
    assert better.low <= better.delta <= better.high < 0
    assert better.p_value == pytest.approx(1 / 10_001) and better.n_permutations == 10_000  # the default


# ---------------------------------------------------------------------------------------------- flips and JSON


def test_flips() -> None:
    labels = [0, 1, 1, 0, 2, 2]
    base = [0, 0, 1, 1, 2, 0]
    ft = [0, 1, 0, 0, 1, 0]
    result = flips(labels, base, ft)
    assert result.wrong_to_right == [1, 3]
    assert result.right_to_wrong == [2, 4]
    wrong_to_right, right_to_wrong = result
    assert all(type(i) is int for i in wrong_to_right + right_to_wrong)


def test_results_serialise_to_json() -> None:
    labels, preds = _predictions(100, 2, 0.7, seed=14)
    objects = [
        bootstrap_ci(batched_accuracy, labels, preds, n_resamples=50),
        classification_intervals(labels, preds, 2, ["neg", "pos"], n_resamples=50),
        mcnemar_exact(preds == labels, labels == labels),
        paired_bootstrap_test(batched_accuracy, labels, preds, labels, n_resamples=50),
        flips(labels, preds, labels),
    ]
    for obj in objects:
        text = json.dumps(dataclasses.asdict(obj))
        assert json.loads(text)
    assert isinstance(objects[0], Interval)
    assert isinstance(objects[2], McNemarResult)
    assert isinstance(objects[3], PairedTestResult)
    assert "permutation" in objects[3].test and "McNemar" in objects[2].test


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="equal length"):
        bootstrap_ci(batched_accuracy, [0, 1], [0])
    with pytest.raises(ValueError, match="zero examples"):
        bootstrap_ci(batched_accuracy, [], [])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(batched_accuracy, [0], [0], confidence=1.5)
    with pytest.raises(ValueError, match="label names"):
        classification_intervals([0, 1], [0, 1], 2, ["only-one"])
