"""Generation metrics against the reference implementations: sacreBLEU's corpus formulas from summed statistics,
rouge-score, the evaluate modules that load offline by path, and cardgen's paired results against sacreBLEU's own
paired bootstrap and approximate-randomization tests."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("sacrebleu")
pytest.importorskip("rouge_score")

from cardgen.stats.text import (  # noqa: E402
    TextMetricSettings,
    UnicodeTokenizer,
    bleu_from_sums,
    chrf_from_sums,
    score_texts,
)

WORDS = ["der", "die", "das", "ein", "Haus", "ist", "groß", "klein", "nicht", "und", "oder", "mit", "ohne", "Datei", "Fehler", "Größe", "Straße", "öffnen", "the", "house", "is", "big", "small", "file", "error"]


def _sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) for _ in range(n)]


def _noisy(refs: list[str], keep: float, seed: int) -> list[str]:
    """Each reference with every word replaced by a random one with probability 1 - keep (a system of some quality)."""
    rng = random.Random(seed)
    return [" ".join(w if rng.random() < keep else rng.choice(WORDS) for w in r.split()) for r in refs]


@pytest.mark.parametrize("smooth", ["exp", "none", "floor", "add-k"])
def test_corpus_bleu_from_summed_statistics_is_sacrebleus(smooth: str) -> None:
    from sacrebleu.metrics import BLEU

    hyps, refs = _sentences(120, 1), _sentences(120, 2)
    metric = BLEU(smooth_method=smooth)
    stats = np.asarray(metric._extract_corpus_statistics(hyps, [refs]), dtype=float)
    rng = np.random.default_rng(0)
    for _ in range(100):  # sums of small random subsets hit the corner cases: no 4-gram, no match, short output
        sums = stats[rng.integers(0, len(stats), rng.integers(1, 6))].sum(axis=0)
        assert float(bleu_from_sums(sums, smooth_method=smooth)) == pytest.approx(
            metric._compute_score_from_stats(list(sums)).score, abs=1e-9)
    batch = stats[rng.integers(0, len(stats), (50, len(stats)))].sum(axis=1)  # vectorised over resamples
    expected = [metric._compute_score_from_stats(list(s)).score for s in batch]
    np.testing.assert_allclose(bleu_from_sums(batch, smooth_method=smooth), expected, atol=1e-9)


@pytest.mark.parametrize(("word_order", "eps"), [(0, False), (2, False), (0, True)])
def test_chrf_from_summed_statistics_is_sacrebleus(word_order: int, eps: bool) -> None:
    from sacrebleu.metrics import CHRF

    hyps, refs = _sentences(80, 3), _sentences(80, 4)
    metric = CHRF(word_order=word_order, eps_smoothing=eps)
    stats = np.asarray(metric._extract_corpus_statistics(hyps, [refs]), dtype=float)
    rng = np.random.default_rng(1)
    batch = np.concatenate([stats[rng.integers(0, len(stats), (40, len(stats)))].sum(axis=1), stats[:5]])
    expected = [metric._compute_score_from_stats(list(s)).score for s in batch]
    np.testing.assert_allclose(chrf_from_sums(batch, word_order=word_order, eps_smoothing=eps), expected, atol=1e-9)


def test_score_texts_agrees_with_sacrebleu_and_rouge_score() -> None:
    import sacrebleu
    from rouge_score import rouge_scorer

    refs = _sentences(60, 5)
    hyps = _noisy(refs, 0.6, 6)
    scores = score_texts(hyps, refs, TextMetricSettings(rouge_tokenizer="default"))
    assert scores.metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    assert scores.metrics["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-9)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    rows = [scorer.score(r, h) for h, r in zip(hyps, refs, strict=True)]
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert scores.metrics[key] == pytest.approx(100 * np.mean([row[key].fmeasure for row in rows]), abs=1e-9)
    assert scores.metrics["exact_match"] == pytest.approx(100 * np.mean([h == r for h, r in zip(hyps, refs,
                                                                                                 strict=True)]))
    sentence = [sacrebleu.sentence_chrf(h, [r]).score for h, r in zip(hyps, refs, strict=True)]
    np.testing.assert_allclose(scores.sentence_chrf, sentence, atol=1e-9)
    assert scores.signatures["bleu"] == "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" + sacrebleu.__version__


def test_lowercase_setting_is_sacrebleus_and_in_the_signature() -> None:
    import sacrebleu

    refs = ["Die Datei ist groß", "Fehler beim Lesen"]
    hyps = ["die datei ist groß", "fehler beim lesen"]
    scores = score_texts(hyps, refs, TextMetricSettings(lowercase=True))
    assert scores.metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score)
    assert scores.metrics["exact_match"] == 100.0
    assert "case:lc" in scores.signatures["bleu"] and "case:lc" in scores.signatures["chrf"]


def test_unicode_rouge_tokenizer_keeps_umlauts_and_equals_the_default_on_ascii() -> None:
    from rouge_score import tokenizers

    default = tokenizers.DefaultTokenizer(use_stemmer=True)
    ascii_text = "The cats were running, quickly; 3 files (big) ok!"
    assert UnicodeTokenizer().tokenize(ascii_text) == default.tokenize(ascii_text)
    assert UnicodeTokenizer().tokenize("Größe der Straße") == ["größe", "der", "straße"]
    assert default.tokenize("Größe der Straße") == ["gr", "e", "der", "stra", "e"]  # why cardgen's default differs


def test_evaluate_modules_load_offline_by_path_and_match_sacrebleu(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("evaluate")
    import sacrebleu

    from cardgen.evaluate_metrics import load_metric, metric_path

    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    refs = _sentences(30, 7)
    hyps = _noisy(refs, 0.7, 8)
    bleu = load_metric("bleu").compute(predictions=hyps, references=refs)
    assert bleu["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert bleu["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    chrf = load_metric("chrf").compute(predictions=hyps, references=refs)
    assert chrf["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    rouge = load_metric("rouge").compute(predictions=hyps, references=refs)
    assert rouge["rougeL"] == pytest.approx(score_texts(hyps, refs).metrics["rougeL"])
    assert load_metric("exact_match").compute(predictions=["a  b"], references=["a b"])["exact_match"] == 100.0
    assert (metric_path("bleu") / "cardgen_bleu.py").is_file()


def test_a_hub_metric_offline_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("evaluate")
    from cardgen.errors import ConfigError
    from cardgen.evaluate_metrics import load_metric

    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    with pytest.raises(ConfigError) as info:
        load_metric("evaluate:bertscore")
    assert "offline" in info.value.message and "evaluate:bertscore" in info.value.hint


# ---------------------------------------------------------------------------------------------------------------
# Paired results against sacreBLEU's own significance tests


def _evaluation(name: str, outputs: list[str], refs: list[str]):  # noqa: ANN202
    from cardgen.config import load_config
    from cardgen.record import EvaluationRecord
    from cardgen.tasks.generation import score_outputs

    cfg = load_config(data={"model": "x", "task": "seq2seq", "data": {"train": "x.jsonl"}})

    class Gen:
        eos_token_id, pad_token_id = 1, 0

        def to_diff_dict(self) -> dict:
            return {}

    metrics, extra = score_outputs(cfg, sources=refs, prompts=refs, references=refs, outputs=outputs,
                                   output_tokens=[len(o.split()) for o in outputs], gen_cfg=Gen())
    return EvaluationRecord(model=name, split="test", num_examples=len(refs), metrics=metrics, extra=extra)


def _sacrebleu_paired(base: list[str], ft: list[str], refs: list[str], test: str, n: int) -> dict:
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    _, scores = PairedTest([("base", base), ("fine-tuned", ft)], {"BLEU": BLEU(), "chrF": CHRF()}, [refs],
                           test_type=test, n_samples=n)()
    by_prefix = {"bleu": "BLEU", "chrf": "chrF"}  # sacreBLEU names its columns "BLEU" and "chrF2"
    return {key: next(v[1] for k, v in scores.items() if k.startswith(prefix)) for key, prefix in by_prefix.items()}


@pytest.mark.parametrize(("keep_base", "keep_ft"), [(0.5, 0.52), (0.4, 0.7)], ids=["close", "clear"])
def test_paired_results_agree_with_sacrebleus_paired_tests(keep_base: float, keep_ft: float) -> None:
    """p-values of the paired bootstrap (sacreBLEU 'bs') and of the permutation test (sacreBLEU 'ar'), and the
    fine-tuned model's 95% interval, within Monte-Carlo error of sacreBLEU's own.

    Tolerance: each p-value is a proportion over N resamples drawn with different random streams, so the two
    estimates differ by about sqrt(2 p (1 - p) / N) (0.014 at p = 0.3, N = 2,000); 4 of those plus 2/N. The interval's
    half-width is an order statistic of N = 2,000 resampled scores: 15% relative covers its sampling spread.
    """
    from cardgen.compare.generation import generation_comparison

    n = 2000
    refs = _sentences(150, 11)
    base_out, ft_out = _noisy(refs, keep_base, 12), _noisy(refs, keep_ft, 13)
    ours = generation_comparison("seq2seq", _evaluation("base", base_out, refs), _evaluation("ft", ft_out, refs),
                                 base_model="a", fine_tuned_model="b", n_resamples=n, confidence=0.95, seed=0)
    rows = {r.key: r for r in ours.metrics}
    assert ours.generation is not None
    bs = _sacrebleu_paired(base_out, ft_out, refs, "bs", n)
    ar = _sacrebleu_paired(base_out, ft_out, refs, "ar", n)

    def close(p_ours: float, p_theirs: float) -> bool:
        p = max(min((p_ours + p_theirs) / 2, 0.5), 0.0)
        return abs(p_ours - p_theirs) <= 4 * np.sqrt(2 * p * (1 - p) / n) + 2 / n

    for key in ("bleu", "chrf"):
        assert rows[key].fine_tuned[0] == pytest.approx(bs[key].score, abs=1e-9)
        assert close(ours.generation.bootstrap_p_values[key], bs[key].p_value), (key, ours.generation, bs[key])
        assert close(rows[key].p_value or 0.0, ar[key].p_value), (key, rows[key].p_value, ar[key].p_value)
        half_width = (rows[key].fine_tuned[2] - rows[key].fine_tuned[1]) / 2
        assert half_width == pytest.approx(bs[key].ci, rel=0.15)


def test_a_model_against_itself_has_no_effect() -> None:
    from cardgen.compare.generation import generation_comparison

    refs = _sentences(40, 21)
    out = _noisy(refs, 0.5, 22)
    c = generation_comparison("seq2seq", _evaluation("base", out, refs), _evaluation("ft", out, refs),
                              base_model="a", fine_tuned_model="a", n_resamples=200, confidence=0.95, seed=0)
    for row in c.metrics:
        assert row.delta == [0.0, 0.0, 0.0] and row.p_value == 1.0
    assert c.generation is not None
    assert set(c.generation.bootstrap_p_values.values()) == {1.0}
    assert c.generation.gains == [] and c.generation.losses == [] and c.generation.same == 40


def test_largest_gains_and_losses_by_sentence_chrf() -> None:
    from cardgen.compare.generation import generation_comparison

    refs = ["die Datei ist groß", "Fehler beim Lesen der Eingabe", "keine Dateisysteme bearbeitet", "Wert eingeben"]
    base = ["die Datei ist groß", "xx", "keine Dateisysteme", "Wert eingeben"]
    ft = ["die Datei", "Fehler beim Lesen der Eingabe", "keine Dateisysteme bearbeitet", "Wert eingeben"]
    c = generation_comparison("seq2seq", _evaluation("base", base, refs), _evaluation("ft", ft, refs),
                              base_model="a", fine_tuned_model="b", n_resamples=100, confidence=0.95, seed=0,
                              num_examples=1)
    g = c.generation
    assert g is not None and (g.better, g.worse, g.same) == (2, 1, 1)
    assert [e.index for e in g.gains] == [1] and [e.index for e in g.losses] == [0]
    assert g.gains[0].base == "xx" and g.gains[0].fine_tuned_chrf == 100.0
