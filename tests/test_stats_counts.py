"""Count-based resampling (cardgen.stats.tables, .sums, .comparison) against the per-example reference."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from cardgen.stats import DEFAULT_PERMUTATIONS, sums, tables
from cardgen.stats.comparison import MACRO_KEYS, classification_comparison_stats
from cardgen.stats.intervals import bootstrap_ci, classification_intervals, perplexity_bootstrap
from cardgen.stats.metrics import (
    SumStatistic,
    batched_accuracy,
    classification_metrics,
    per_example,
    ratio_of_sums,
    table_metric,
)
from cardgen.stats.paired import (
    p_value_floor,
    paired_bootstrap_test,
    paired_ratio_test,
    paired_sum_test,
    two_sided_p,
)


def _pair(n: int, k: int, acc_a: float, acc_b: float, changed: float, seed: int):
    """Gold labels, base predictions right with probability ``acc_a``, and fine-tuned predictions that redraw a
    fraction ``changed`` of the base's (right with probability ``acc_b``): correlated, like two real models."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)

    def draw(acc: float, size: int, gold: np.ndarray) -> np.ndarray:
        wrong = rng.random(size) > acc
        out = gold.copy()
        out[wrong] = (gold[wrong] + rng.integers(1, k, size=int(wrong.sum()))) % k
        return out

    a = draw(acc_a, n, y)
    b = a.copy()
    redo = rng.random(n) < changed
    b[redo] = draw(acc_b, int(redo.sum()), y[redo])
    return y, a, b


# (n, K, base accuracy, fine-tuned accuracy, fraction redrawn): small and larger sets, 2-4 classes, effects from
# none to clear, so the p-values span the range.
DATASETS = [(200, 2, 0.70, 0.74, 0.3), (1000, 3, 0.60, 0.63, 0.2), (3000, 4, 0.50, 0.50, 0.1)]
B, N = 2000, 2000  # resamples and permutations on both sides


def _quantile_tolerance(boot: np.ndarray, q: float, n: int) -> float:
    """Five standard errors of the difference of two independent estimates of the q-quantile, plus one step.

    The sample q-quantile of B draws has standard error sqrt(q(1 - q) / B) / f(x_q); with the bootstrap
    distribution close to normal, f(x_q) = phi(z_q) / sd. Two independent estimates differ by sqrt(2) times that.
    Metrics of n examples move in steps of about 1/n, so one step is added for the discreteness.
    """
    from scipy.stats import norm

    sd = float(np.std(boot))
    se = math.sqrt(q * (1 - q) / len(boot)) * sd / norm.pdf(norm.ppf(q))
    return 5 * math.sqrt(2) * se + 1.0 / n


def _p_tolerance(p: float, permutations: int) -> float:
    """Five standard errors of the difference of two independent Monte-Carlo p-values (each binomial, sd
    sqrt(p(1 - p) / N)), plus the 1/(N + 1) of the add-one correction."""
    return 5 * math.sqrt(2 * max(p * (1 - p), 1e-4) / permutations) + 2.0 / (permutations + 1)


def _reference_boot(metric, *arrays, seed: int) -> np.ndarray:
    """The per-example bootstrap distribution: B rows of example indices from ``default_rng(seed)``."""
    idx = np.random.default_rng(seed).integers(0, len(arrays[0]), size=(B, len(arrays[0])))
    return np.asarray(metric(*(x[idx] for x in arrays)), dtype=float)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("seed", [0, 1])
def test_intervals_and_p_values_agree_with_the_per_example_reference(dataset, seed: int) -> None:
    """Endpoints and p-values within Monte-Carlo error of the per-example path (tolerances: see the helpers).

    Both paths draw from the same distribution (a multinomial of cell counts is a resample of examples; binomial
    moves per discordant cell are per-example swaps) with independent random numbers, so they may differ only by
    Monte-Carlo error: five standard errors of a difference of two independent estimates (of a quantile from
    B = 2000 draws, of a p-value from N = 2000 permutations), plus the 1/n steps of a metric of n examples.
    Over the 6 cases x 36 numbers compared, a false failure at five standard errors has probability < 1e-4.
    """
    n, k, acc_a, acc_b, changed = dataset
    y, a, b = _pair(n, k, acc_a, acc_b, changed, seed=10 + seed)
    new = classification_comparison_stats(y, a, b, k, n_resamples=B, seed=seed, n_permutations=N)
    kinds = [(key, None) for key in MACRO_KEYS] + [(kind, 0) for kind in ("precision", "recall", "f1")]
    for kind, cls in kinds:
        metric = per_example(table_metric(kind, k, cls))
        ours = {"base": getattr(new.base, kind) if cls is None else getattr(new.base.per_class["0"], kind),
                "ft": getattr(new.fine_tuned, kind) if cls is None else getattr(new.fine_tuned.per_class["0"], kind)}
        delta = new.deltas[kind] if cls is None else new.per_class_deltas["0"][kind]
        ref_a, ref_b = _reference_boot(metric, y, a, seed=seed), _reference_boot(metric, y, b, seed=seed)
        for boot, got in ((ref_a, (ours["base"].low, ours["base"].high)), (ref_b, (ours["ft"].low, ours["ft"].high)),
                          (ref_b - ref_a, (delta.low, delta.high))):
            for q, value in zip((0.025, 0.975), got, strict=True):
                expected = float(np.quantile(boot, q))
                assert value == pytest.approx(expected, abs=_quantile_tolerance(boot, q, n)), (kind, cls, q)
        if cls is None and kind != "recall_macro":
            ref = paired_bootstrap_test(metric, y, a, b, n_resamples=200, n_permutations=N, seed=seed)
            assert delta.delta == pytest.approx(ref.delta, abs=1e-12)
            assert delta.p_value == pytest.approx(ref.p_value, abs=_p_tolerance(ref.p_value, N)), kind


@pytest.mark.parametrize("seed", [0, 3])
def test_table_metrics_take_the_count_path_in_the_generic_functions(seed: int) -> None:
    """paired_bootstrap_test / bootstrap_ci with a TableMetric agree with their per-example path (same
    tolerances as above) and give exactly what classification_comparison_stats gives for the same seed."""
    y, a, b = _pair(800, 3, 0.65, 0.7, 0.3, seed=seed)
    f1 = table_metric("f1_macro", 3)
    fast = paired_bootstrap_test(f1, y, a, b, n_resamples=B, n_permutations=N, seed=seed)
    slow = paired_bootstrap_test(per_example(f1), y, a, b, n_resamples=B, n_permutations=N, seed=seed)
    whole = classification_comparison_stats(y, a, b, 3, n_resamples=B, n_permutations=N, seed=seed)
    assert (fast.delta, fast.low, fast.high, fast.p_value) == tuple(whole.deltas["f1_macro"])
    assert fast.delta == pytest.approx(slow.delta, abs=1e-12)
    boot = _reference_boot(per_example(f1), y, b, seed=seed) - _reference_boot(per_example(f1), y, a, seed=seed)
    assert fast.low == pytest.approx(slow.low, abs=_quantile_tolerance(boot, 0.025, 800))
    assert fast.high == pytest.approx(slow.high, abs=_quantile_tolerance(boot, 0.975, 800))
    assert fast.p_value == pytest.approx(slow.p_value, abs=_p_tolerance(slow.p_value, N))
    # bootstrap_ci of a TableMetric draws over the (gold, prediction) table, as classification_intervals does.
    alone = bootstrap_ci(table_metric("recall_macro", 3), y, a, n_resamples=300, seed=seed)
    assert alone == classification_intervals(y, a, 3, n_resamples=300, seed=seed).recall_macro


def test_documented_draws_recompute_from_the_predictions() -> None:
    """The bootstrap is default_rng([seed, 2]).multinomial over the non-empty (gold, base, ft) cells in
    lexicographic order; the permutations binomial(discordant counts, 1/2) from default_rng([seed, 1])."""
    y, a, b = _pair(300, 3, 0.6, 0.75, 0.4, seed=5)
    seed, n_boot, n_perm = 4, 500, 700
    got = classification_comparison_stats(y, a, b, 3, n_resamples=n_boot, seed=seed, n_permutations=n_perm)
    codes = y * 9 + a * 3 + b
    cells, counts = np.unique(codes, return_counts=True)
    draws = np.random.default_rng([seed, 2]).multinomial(len(y), counts / len(y), size=n_boot)
    gold, base, ft = cells // 9, cells // 3 % 3, cells % 3
    acc_a = draws[:, gold == base].sum(axis=1) / len(y)
    acc_b = draws[:, gold == ft].sum(axis=1) / len(y)
    assert (got.base.accuracy.low, got.base.accuracy.high) == tuple(np.quantile(acc_a, [0.025, 0.975]))
    assert (got.deltas["accuracy"].low, got.deltas["accuracy"].high) == pytest.approx(
        tuple(np.quantile(acc_b - acc_a, [0.025, 0.975])), abs=1e-15)
    disc = base != ft
    moved = np.random.default_rng([seed, 1]).binomial(counts[disc], 0.5, size=(n_perm, int(disc.sum())))
    # Moving an example from (g, a, b) to (g, b, a) changes the accuracy delta by ([b == g] - [a == g]) * -2 / n.
    sign = ((ft[disc] == gold[disc]).astype(int) - (base[disc] == gold[disc]).astype(int))
    observed = float(np.mean(b == y) - np.mean(a == y))
    null = observed - 2 * (moved * sign).sum(axis=1) / len(y)
    assert got.deltas["accuracy"].p_value == pytest.approx(two_sided_p(null, observed), abs=1e-12)


def test_points_equal_sklearn_and_intervals_contain_them() -> None:
    y, a, b = _pair(600, 3, 0.7, 0.8, 0.5, seed=7)
    names = ["neg", "neu", "pos"]
    got = classification_comparison_stats(y, a, b, 3, names, n_resamples=300, confidence=0.9, seed=1,
                                           n_permutations=300)
    for pred, iv in ((a, got.base), (b, got.fine_tuned)):
        ref = classification_metrics(y, pred, 3)
        for key in MACRO_KEYS:
            assert getattr(iv, key).point == pytest.approx(ref[key], abs=1e-12)
            assert getattr(iv, key).low <= getattr(iv, key).point <= getattr(iv, key).high
        p, r, f, support = precision_recall_fscore_support(y, pred, labels=[0, 1, 2], zero_division=0)
        for i, name in enumerate(names):
            assert (iv.per_class[name].precision.point, iv.per_class[name].recall.point,
                    iv.per_class[name].f1.point) == pytest.approx((p[i], r[i], f[i]), abs=1e-12)
            assert iv.per_class[name].support == support[i]
    assert got.deltas["accuracy"].delta == pytest.approx(np.mean(b == y) - np.mean(a == y), abs=1e-12)
    assert (got.num_examples, got.n_resamples, got.n_permutations, got.seed) == (600, 300, 300, 1)
    assert json.loads(json.dumps(dataclasses.asdict(got)))


def test_model_compared_with_itself_gives_zero_and_p_one() -> None:
    y, a, _ = _pair(500, 3, 0.7, 0.7, 0.0, seed=11)
    got = classification_comparison_stats(y, a, a.copy(), 3, n_resamples=400, n_permutations=400)
    tests = list(got.deltas.values()) + [t for per in got.per_class_deltas.values() for t in per.values()]
    assert all(tuple(t) == (0.0, 0.0, 0.0, 1.0) for t in tests)
    assert got.mcnemar.p_value == 1.0 and (got.mcnemar.b, got.mcnemar.c) == (0, 0)
    assert dataclasses.asdict(got.base) == dataclasses.asdict(got.fine_tuned)
    for metric in (batched_accuracy, table_metric("f1_macro", 3), table_metric("recall", 3, 2)):
        assert tuple(paired_bootstrap_test(metric, y, a, a.copy(), n_resamples=300)) == (0.0, 0.0, 0.0, 1.0)
    nll = np.random.default_rng(0).gamma(3.0, 20.0, size=120)
    tok = np.random.default_rng(1).integers(5, 90, size=120).astype(float)
    assert tuple(paired_ratio_test(nll, tok, nll.copy(), tok.copy(), np.exp, n_resamples=300)) == (0, 0, 0, 1.0)


def test_mcnemar_textbook_case_from_the_table() -> None:
    """20 both right, 1 base only, 9 fine-tuned only, 5 both wrong: p = 2 (C(10,0) + C(10,1)) / 2^10."""
    y = np.zeros(35, dtype=int)
    a = np.array([0] * 20 + [0] * 1 + [1] * 9 + [1] * 5)
    b = np.array([0] * 20 + [1] * 1 + [0] * 9 + [1] * 5)
    got = classification_comparison_stats(y, a, b, 2, n_resamples=100, n_permutations=100)
    assert (got.mcnemar.b, got.mcnemar.c) == (1, 9)
    assert got.mcnemar.p_value == pytest.approx(22 / 1024, abs=1e-15)


def test_blocks_do_not_change_the_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    y, a, b = _pair(400, 3, 0.6, 0.7, 0.5, seed=2)
    nll = np.random.default_rng(3).gamma(3.0, 20.0, size=150)
    tok = np.random.default_rng(4).integers(5, 90, size=150).astype(float)

    def run():
        return (dataclasses.asdict(classification_comparison_stats(y, a, b, 3, n_resamples=300, n_permutations=301)),
                perplexity_bootstrap(nll, tok, n_resamples=300), paired_ratio_test(nll, tok, nll * 0.9, tok))

    whole = run()
    monkeypatch.setattr(tables, "_BLOCK_CELLS", 27 * 7)  # blocks of 7 resamples
    monkeypatch.setattr(sums, "_BLOCK_ELEMENTS", 150 * 11)  # blocks of 11 resamples
    blocked = run()
    assert whole[0] == blocked[0]
    assert tuple(whole[1]) == pytest.approx(tuple(blocked[1]), rel=1e-13)
    assert tuple(whole[2]) == pytest.approx(tuple(blocked[2]), rel=1e-13)


def test_sum_statistics_resample_the_same_documents_as_the_per_example_path() -> None:
    """Count weights are built from the per-example path's indices: agreement to rounding, not Monte-Carlo."""
    rng = np.random.default_rng(8)
    tok = rng.integers(5, 400, size=250).astype(float)
    nll_a = tok * rng.normal(3.0, 0.3, size=250).clip(0.1)
    nll_b = nll_a - tok * rng.normal(0.05, 0.2, size=250)
    ppl = ratio_of_sums(np.exp)
    fast = bootstrap_ci(ppl, nll_a, tok, n_resamples=700, seed=2)
    slow = bootstrap_ci(per_example(ppl), nll_a, tok, n_resamples=700, seed=2)
    assert tuple(fast) == pytest.approx(tuple(slow), rel=1e-12)
    got = paired_ratio_test(nll_a, tok, nll_b, tok, np.exp, n_resamples=700, seed=2, n_permutations=900)
    idx = np.random.default_rng(2).integers(0, 250, size=(700, 250))
    boot = ppl(nll_b[idx], tok[idx]) - ppl(nll_a[idx], tok[idx])
    swap = np.random.default_rng([2, 1]).random((900, 250)) < 0.5
    null = ppl(np.where(swap, nll_a, nll_b), tok) - ppl(np.where(swap, nll_b, nll_a), tok)
    assert got.delta == pytest.approx(float(ppl(nll_b, tok) - ppl(nll_a, tok)), rel=1e-12)
    assert (got.low, got.high) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])), rel=1e-10)
    assert got.p_value == pytest.approx(two_sided_p(null, got.delta), abs=1e-12)


def test_sum_statistic_of_several_columns_like_corpus_bleu() -> None:
    """A statistic of a vector of sums per model (here a BLEU-like geometric mean of two precisions)."""
    rng = np.random.default_rng(9)
    totals = rng.integers(10, 40, size=(200, 2)).astype(float)
    matches_a = np.floor(totals * rng.uniform(0.3, 0.6, size=(200, 2)))
    matches_b = np.minimum(totals, matches_a + rng.integers(0, 3, size=(200, 2)))

    def bleu_like(s: np.ndarray) -> np.ndarray:
        return np.exp(0.5 * (np.log(s[..., 0] / s[..., 2]) + np.log(s[..., 1] / s[..., 3])))

    stat = SumStatistic(bleu_like, "bleu-like")
    data_a, data_b = np.column_stack([matches_a, totals]), np.column_stack([matches_b, totals])
    got = paired_sum_test(stat, data_a, data_b, n_resamples=500, n_permutations=500, seed=1)
    assert got.delta == pytest.approx(float(bleu_like(data_b.sum(0)) - bleu_like(data_a.sum(0))), rel=1e-12)
    assert 0 < got.low <= got.delta <= got.high and got.at_floor
    assert tuple(paired_sum_test(stat, data_a, data_a.copy(), n_resamples=200)) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="equal shape"):
        paired_sum_test(stat, data_a, data_b[:, :3])


def test_default_permutations_and_the_p_value_floor() -> None:
    assert DEFAULT_PERMUTATIONS == 10_000
    y, a, b = _pair(2000, 2, 0.6, 0.9, 1.0, seed=12)
    clear = classification_comparison_stats(y, a, b, 2, n_resamples=200)
    assert clear.n_permutations == DEFAULT_PERMUTATIONS
    assert clear.deltas["f1_macro"].p_value == pytest.approx(1 / 10_001)
    assert clear.deltas["f1_macro"].at_floor and clear.deltas["f1_macro"].p_floor == pytest.approx(1 / 10_001)
    y, a, b = _pair(300, 2, 0.7, 0.7, 0.3, seed=13)
    vague = classification_comparison_stats(y, a, b, 2, n_resamples=200, n_permutations=999)
    assert not vague.deltas["accuracy"].at_floor and vague.deltas["accuracy"].p_value > 0.01
    assert p_value_floor(999) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="n_permutations"):
        p_value_floor(0)


def test_many_classes_use_only_the_cells_that_occur() -> None:
    """K = 300: K^3 = 27M possible cells, a few hundred occur; no K^3 array is built."""
    y, a, b = _pair(500, 300, 0.6, 0.7, 0.5, seed=14)
    got = classification_comparison_stats(y, a, b, 300, n_resamples=100, n_permutations=100)
    ref = classification_metrics(y, b, 300)
    assert got.fine_tuned.f1_macro.point == pytest.approx(ref["f1_macro"], abs=1e-12)
    assert got.deltas["accuracy"].delta == pytest.approx(np.mean(b == y) - np.mean(a == y), abs=1e-12)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        classification_comparison_stats([0, 3], [0, 1], [1, 1], 3)
    with pytest.raises(ValueError, match="label names"):
        classification_comparison_stats([0, 1], [0, 1], [1, 1], 2, ["one"])
    with pytest.raises(ValueError, match="equal length"):
        classification_comparison_stats([0, 1], [0], [1, 1], 2)
    with pytest.raises(ValueError, match="n_permutations"):
        classification_comparison_stats([0, 1], [0, 1], [1, 1], 2, n_permutations=0)
    with pytest.raises(ValueError, match="unknown metric"):
        table_metric("auc", 2)
    with pytest.raises(ValueError, match="per-class"):
        table_metric("f1", 2)
