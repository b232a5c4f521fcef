"""Generation metrics with the reference implementations: BLEU and chrF (sacreBLEU), ROUGE (rouge-score), exact match.

Corpus BLEU and chrF are not means of sentence scores: they are functions of n-gram counts summed over the corpus.
sacreBLEU's own per-sentence sufficient statistics are kept for every sentence (BLEU: hypothesis and reference
length, matches and totals per n-gram order; chrF: hypothesis, reference and match counts per character and word
n-gram order), and the corpus score of any resample is the score of its summed statistics. :func:`bleu_from_sums`
and :func:`chrf_from_sums` are sacreBLEU's formulas vectorised over many resamples at once (tested equal to
``metric._compute_score_from_stats``), so intervals and paired tests go through :mod:`cardgen.stats.sums`.

ROUGE is the mean of per-sentence F-measures (as rouge-score's aggregator and ``evaluate``'s rouge report it), and
exact match a mean of 0/1 scores: both are ratios of sums too. Everything is on a 0-100 scale.

sacrebleu and rouge-score are the ``generation`` extra; they are imported inside the functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cardgen.stats.metrics import SumStatistic

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# The per-sentence series of each metric key: how the corpus value comes from per-sentence numbers.
SENTENCE_SERIES = ("bleu", "chrf", *ROUGE_TYPES, "exact_match")
_LOG_ZERO = -9999999999.0  # sacrebleu.utils.my_log(0)


@dataclass(frozen=True)
class TextMetricSettings:
    """How the metrics are computed; part of their signatures."""

    lowercase: bool = False
    bleu_tokenize: str = "13a"
    chrf_word_order: int = 0
    rouge_tokenizer: str = "unicode"


@dataclass
class TextScores:
    """Corpus scores and per-sentence statistics of one system's outputs against the references.

    Attributes:
        metrics: Corpus values on a 0-100 scale: ``bleu``, ``chrf``, ``rouge1`` ... ``rougeLsum``, ``exact_match``.
        bleu_stats: (n, 2 + 2 * 4) sacreBLEU sufficient statistics per sentence.
        chrf_stats: (n, 3 * (char order + word order)) per sentence.
        rouge: Rouge type -> per-sentence F-measure (0-1).
        exact: Per-sentence 0/1.
        sentence_chrf: Per-sentence chrF (0-100): what the card's gains and losses are sorted by.
        signatures: Metric key -> reproducibility signature.
    """

    metrics: dict[str, float]
    bleu_stats: np.ndarray
    chrf_stats: np.ndarray
    rouge: dict[str, np.ndarray]
    exact: np.ndarray
    sentence_chrf: np.ndarray
    signatures: dict[str, str] = field(default_factory=dict)


def _bleu(settings: TextMetricSettings) -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(lowercase=settings.lowercase, tokenize=settings.bleu_tokenize)


def _chrf(settings: TextMetricSettings) -> Any:
    from sacrebleu.metrics import CHRF

    return CHRF(word_order=settings.chrf_word_order, lowercase=settings.lowercase)


def check_settings(settings: TextMetricSettings) -> None:
    """Fail now (not after training) when sacreBLEU rejects a setting, e.g. an unknown tokenizer.

    Raises:
        ValueError: naming the setting.
    """
    from sacrebleu.metrics import BLEU

    if settings.bleu_tokenize not in BLEU.TOKENIZERS:
        raise ValueError(f"unknown sacreBLEU tokenizer {settings.bleu_tokenize!r} (have {', '.join(BLEU.TOKENIZERS)})")


class UnicodeTokenizer:
    """rouge-score's default tokenizer (lower case, non-alphanumerics to spaces, Porter stemmer on words of more than
    3 characters) with Unicode letters and digits kept: the default drops every character outside ``a-z0-9``, so
    "Größe" would become the tokens "gr" and "e". Identical to the default on ASCII text without underscores."""

    _NON_WORD = re.compile(r"[\W_]+", re.UNICODE)

    def __init__(self, use_stemmer: bool = True) -> None:
        from nltk.stem import porter  # rouge-score's own stemmer (code only; no NLTK data download)

        self._stemmer = porter.PorterStemmer("ORIGINAL_ALGORITHM") if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        tokens = self._NON_WORD.sub(" ", text.lower()).split()
        if self._stemmer is not None:
            tokens = [self._stemmer.stem(t) if len(t) > 3 else t for t in tokens]
        return [t for t in tokens if t]


def rouge_scorer(settings: TextMetricSettings) -> Any:
    """rouge-score's scorer for ROUGE-1/2/L/Lsum with the Porter stemmer (no NLTK data needed)."""
    from rouge_score import rouge_scorer as rs

    tokenizer = UnicodeTokenizer() if settings.rouge_tokenizer == "unicode" else None
    return rs.RougeScorer(list(ROUGE_TYPES), use_stemmer=True, tokenizer=tokenizer)


def signatures(settings: TextMetricSettings, bleu: Any = None, chrf: Any = None) -> dict[str, str]:
    """Reproducibility signatures: sacreBLEU's for BLEU and chrF, an equivalent line for ROUGE and exact match."""
    from importlib.metadata import version

    bleu = bleu if bleu is not None else _bleu(settings)
    chrf = chrf if chrf is not None else _chrf(settings)
    if getattr(bleu, "num_refs", 0) == 0:  # the signature reads the number of references seen
        bleu.num_refs = chrf.num_refs = 1
    rouge = (f"rouge-score:{version('rouge-score')}|stemmer:porter|tokenizer:{settings.rouge_tokenizer}"
             "|score:mean-sentence-fmeasure|lsum-split:newline")
    exact = f"case:{'lc' if settings.lowercase else 'mixed'}|whitespace:collapsed"
    return {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature()),
            **dict.fromkeys(ROUGE_TYPES, rouge), "exact_match": exact}


def normalise(text: str, lowercase: bool) -> str:
    """The exact-match normal form: whitespace collapsed (and lower case when asked)."""
    text = " ".join(text.split())
    return text.lower() if lowercase else text


def score_texts(hypotheses: Sequence[str], references: Sequence[str],
                settings: TextMetricSettings | None = None) -> TextScores:
    """Corpus and per-sentence scores of ``hypotheses`` against one reference each.

    Raises:
        ValueError: On different lengths or an empty corpus.
    """
    settings = settings or TextMetricSettings()
    hyps, refs = [str(h) for h in hypotheses], [str(r) for r in references]
    if len(hyps) != len(refs) or not hyps:
        raise ValueError(f"need as many hypotheses as references, at least one (got {len(hyps)} and {len(refs)})")
    bleu, chrf = _bleu(settings), _chrf(settings)
    bleu_stats = np.asarray(bleu._extract_corpus_statistics(hyps, [refs]), dtype=np.float64)
    chrf_stats = np.asarray(chrf._extract_corpus_statistics(hyps, [refs]), dtype=np.float64)
    scorer = rouge_scorer(settings)
    rows = [scorer.score(r, h) for h, r in zip(hyps, refs, strict=True)]
    rouge = {t: np.asarray([row[t].fmeasure for row in rows], dtype=np.float64) for t in ROUGE_TYPES}
    exact = np.asarray([normalise(h, settings.lowercase) == normalise(r, settings.lowercase)
                        for h, r in zip(hyps, refs, strict=True)], dtype=np.float64)
    sentence_chrf = chrf_from_sums(chrf_stats, word_order=settings.chrf_word_order)
    metrics = {"bleu": float(bleu_from_sums(bleu_stats.sum(axis=0))),
               "chrf": float(chrf_from_sums(chrf_stats.sum(axis=0), word_order=settings.chrf_word_order))}
    metrics.update({t: 100 * float(v.mean()) for t, v in rouge.items()})
    metrics["exact_match"] = 100 * float(exact.mean())
    return TextScores(metrics=metrics, bleu_stats=bleu_stats, chrf_stats=chrf_stats, rouge=rouge, exact=exact,
                      sentence_chrf=sentence_chrf, signatures=signatures(settings, bleu, chrf))


# ---------------------------------------------------------------------------------------------------------------
# sacreBLEU's corpus formulas, vectorised over the leading axes of summed statistics


def _log(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), _LOG_ZERO)


def bleu_from_sums(sums: np.ndarray, max_order: int = 4, smooth_method: str = "exp",
                   smooth_value: float | None = None) -> np.ndarray:
    """Corpus BLEU (0-100) of summed sacreBLEU statistics ``(..., 2 + 2 * max_order)``: ``[hyp_len, ref_len,
    matches_1..N, totals_1..N]``; sacreBLEU's ``compute_bleu`` (effective order off, as for corpus BLEU)."""
    s = np.asarray(sums, dtype=np.float64)
    sys_len, ref_len = s[..., 0], s[..., 1]
    correct = s[..., 2:2 + max_order].copy()
    total = s[..., 2 + max_order:2 + 2 * max_order].copy()
    defaults = {"none": None, "floor": 0.1, "add-k": 1.0, "exp": None}
    if smooth_method not in defaults:
        raise ValueError(f"unknown smooth_method {smooth_method!r}")
    value = float(defaults[smooth_method] or 0.0) if smooth_value is None else float(smooth_value)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bp = np.where(sys_len < ref_len, np.where(sys_len > 0, np.exp(1 - ref_len / np.where(sys_len > 0, sys_len, 1)),
                                                  0.0), 1.0)
        if smooth_method == "add-k":
            correct[..., 1:] += value
            total[..., 1:] += value
        zero = correct == 0
        # An order without any n-gram stops sacreBLEU's loop: that order and every later one count as precision 0.
        reached = np.cumprod(total > 0, axis=-1).astype(bool)
        safe_total = np.where(total > 0, total, 1.0)
        precision = 100.0 * correct / safe_total
        if smooth_method == "exp":
            doublings = np.cumsum(zero & reached, axis=-1)
            precision = np.where(zero, 100.0 / (2.0 ** doublings * safe_total), precision)
        elif smooth_method == "floor":
            precision = np.where(zero, 100.0 * value / safe_total, precision)
        precision = np.where(reached, precision, 0.0)
        score = bp * np.exp(_log(precision).sum(axis=-1) / max_order)
    no_match = ~np.any(s[..., 2:2 + max_order] > 0, axis=-1)
    return np.where(no_match, 0.0, score)


def chrf_from_sums(sums: np.ndarray, word_order: int = 0, beta: float = 2.0,
                   eps_smoothing: bool = False) -> np.ndarray:
    """chrF (0-100) of summed sacreBLEU statistics ``(..., 3 * order)``, ``[hyp, ref, match]`` per order (character
    orders first, then word orders); sacreBLEU's ``_compute_f_score``."""
    s = np.asarray(sums, dtype=np.float64)
    order = s.shape[-1] // 3
    s = s.reshape(*s.shape[:-1], order, 3)
    hyp, ref, match = s[..., 0], s[..., 1], s[..., 2]
    eps, factor = 1e-16, beta ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(hyp > 0, match / np.where(hyp > 0, hyp, 1), eps)
        rec = np.where(ref > 0, match / np.where(ref > 0, ref, 1), eps)
        if eps_smoothing:
            denom = factor * prec + rec
            f = np.where(denom > 0, (1 + factor) * prec * rec / np.where(denom > 0, denom, 1), eps)
            return 100 * f.sum(axis=-1) / order
        effective = (hyp > 0) & (ref > 0)
        n_eff = effective.sum(axis=-1)
        avg_p = np.where(n_eff > 0, np.where(effective, prec, 0).sum(axis=-1) / np.maximum(n_eff, 1), 0.0)
        avg_r = np.where(n_eff > 0, np.where(effective, rec, 0).sum(axis=-1) / np.maximum(n_eff, 1), 0.0)
        total = avg_p + avg_r
        score = (1 + factor) * avg_p * avg_r / np.where(total > 0, factor * avg_p + avg_r, 1)
    return np.where(total > 0, 100 * score, 0.0)


def bleu_statistic() -> SumStatistic:
    """Corpus BLEU as a statistic of summed per-sentence statistics (for :mod:`cardgen.stats.sums`)."""
    return SumStatistic(bleu_from_sums, "corpus BLEU")


def chrf_statistic(word_order: int = 0) -> SumStatistic:
    """Corpus chrF as a statistic of summed per-sentence statistics."""
    return SumStatistic(lambda s: chrf_from_sums(s, word_order=word_order), "corpus chrF")


def mean_statistic() -> SumStatistic:
    """100 x the mean of per-sentence scores, from the columns (score, 1)."""
    return SumStatistic(lambda s: 100 * s[..., 0] / s[..., 1], "mean of sentence scores x 100")
