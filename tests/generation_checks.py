"""Recompute every number of a generation run's card from run.json's per-example outputs, with sacreBLEU and
rouge-score called directly and the resampling redone with numpy (the seeds are in the record).

Used by the fast tests (a tiny T5 run) and by the slow example tests (SmolLM2 and the MiniLM encoder-decoder).
Each recomputed number must equal the record's within float rounding, and the card must print the record's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
NAMES = {"bleu": "BLEU", "chrf": "chrF", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L",
         "rougeLsum": "ROUGE-Lsum", "exact_match": "Exact match", "perplexity": "Perplexity (lower is better)",
         "loss": "Loss (lower is better)", "bits_per_byte": "Bits per byte (lower is better)"}


class _UnicodeTokens:
    """rouge-score's tokenizer rules written out again (lower case, non-word characters to spaces, Porter stemmer on
    words longer than 3 characters), keeping Unicode letters: an independent copy of cardgen's."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self.stemmer = porter.PorterStemmer("ORIGINAL_ALGORITHM")

    def tokenize(self, text: str) -> list[str]:
        words = re.sub(r"[\W_]+", " ", text.lower()).split()
        return [self.stemmer.stem(w) if len(w) > 3 else w for w in words]


def sentence_scores(hyps: list[str], refs: list[str], settings: dict[str, Any]) -> dict[str, Any]:
    """Per-sentence statistics and scores from the libraries themselves."""
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU, CHRF

    lower = bool(settings["lowercase"])
    bleu = BLEU(lowercase=lower, tokenize=settings["bleu_tokenize"])
    chrf = CHRF(word_order=int(settings["chrf_word_order"]), lowercase=lower)
    tokenizer = _UnicodeTokens() if settings["rouge_tokenizer"] == "unicode" else None
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True, tokenizer=tokenizer)
    rouge = [scorer.score(r, h) for h, r in zip(hyps, refs, strict=True)]

    def norm(t: str) -> str:
        t = " ".join(t.split())
        return t.lower() if lower else t

    return {
        "bleu": (bleu, np.asarray(bleu._extract_corpus_statistics(hyps, [refs]), dtype=float)),
        "chrf": (chrf, np.asarray(chrf._extract_corpus_statistics(hyps, [refs]), dtype=float)),
        **{t: np.asarray([row[t].fmeasure for row in rouge]) for t in ROUGE_TYPES},
        "exact_match": np.asarray([norm(h) == norm(r) for h, r in zip(hyps, refs, strict=True)], dtype=float),
        "sentence_chrf": np.asarray([chrf.sentence_score(h, [r]).score for h, r in zip(hyps, refs, strict=True)]),
    }


def _corpus(scores: dict[str, Any], key: str, weights: np.ndarray) -> np.ndarray:
    """The metric of each weighted resample (weights (B, n)): sacreBLEU's own score of the summed statistics."""
    if key in ("bleu", "chrf"):
        metric, stats = scores[key]
        return np.asarray([metric._compute_score_from_stats(list(s)).score for s in weights @ stats])
    values = scores[key]
    return 100 * (weights @ values) / weights.sum(axis=1)


def _ratio(nll: np.ndarray, den: np.ndarray, key: str, weights: np.ndarray) -> np.ndarray:
    value = (weights @ nll) / (weights @ den)
    return np.exp(value) if key == "perplexity" else value / np.log(2) if key == "bits_per_byte" else value


def _resampling(n: int, n_resamples: int, seed: int, n_permutations: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap counts and permutation swaps as cardgen draws them (one stream each, whatever its blocks)."""
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    counts = np.stack([np.bincount(row, minlength=n) for row in idx]).astype(float)
    swaps = (np.random.default_rng([seed, 1]).random((n_permutations or n_resamples, n)) < 0.5).astype(float)
    return counts, swaps


def _p(null: np.ndarray, observed: float) -> float:
    tol = 1e-12 * max(1.0, abs(observed))
    return (1 + int(np.count_nonzero(np.abs(null) >= abs(observed) - tol))) / (1 + len(null))


def _row(key: str, fn: Any, n: int, c: dict[str, Any]) -> dict[str, Any]:
    """Intervals, delta and p-values of one metric; ``fn(model, weights)`` scores weighted resamples."""
    counts, swaps = _resampling(n, c["bootstrap_samples"], c["seed"], c["permutations"])
    ones = np.ones((1, n))
    point_b, point_f = float(fn("base", ones)[0]), float(fn("ft", ones)[0])
    boot_b, boot_f = fn("base", counts), fn("ft", counts)
    alpha = (1 - c["confidence"]) / 2
    q = [alpha, 1 - alpha]
    # permuted models: sentence i takes the other model's output where swaps[:, i] == 1
    perm_b, perm_f = fn("mix-base", swaps), fn("mix-ft", swaps)
    diffs = np.abs(boot_f - boot_b)
    centred = diffs - diffs.mean()
    delta = point_f - point_b
    return {"base": [point_b, *np.quantile(boot_b, q)], "fine_tuned": [point_f, *np.quantile(boot_f, q)],
            "delta": [delta, *np.quantile(boot_f - boot_b, q)], "p_value": _p(perm_f - perm_b, delta),
            "bootstrap_p": 1.0 if delta == 0 else (np.count_nonzero(centred > abs(delta)) + 1) / (len(diffs) + 1)}


def _scorer(per_model: dict[str, Any], key: str) -> Any:
    """``fn(model, weights)`` for :func:`_row`; 'mix-*' models take the other model's sentence where weight is 1."""
    def fn(model: str, weights: np.ndarray) -> np.ndarray:
        if not model.startswith("mix"):
            return per_model[model](key, weights)
        own, other = ("base", "ft") if model == "mix-base" else ("ft", "base")
        # sums of swapped rows = sums over own rows with weight (1 - s) plus other rows with weight s
        return per_model[f"{own}+{other}"](key, 1 - weights, weights)
    return fn


def check_generation_section(out: Path, tol: float = 1e-6) -> dict[str, Any]:
    """Recompute and check every generation number of a run; returns the recomputed rows."""
    from cardgen.card.format import fmt, format_interval, format_p

    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    card = (out / "README.md").read_text(encoding="utf-8")
    ev, base = record["evaluation"], record["base_evaluation"]
    g, gb = ev["extra"]["generation"], base["extra"]["generation"]
    refs = g["references"]
    assert gb["references"] == refs
    scores = {"ft": sentence_scores(g["outputs"], refs, g["settings"]),
              "base": sentence_scores(gb["outputs"], refs, g["settings"])}
    keys = [k for k in ("bleu", "chrf", *ROUGE_TYPES, "exact_match") if k in ev["metrics"]]
    ones = np.ones((1, len(refs)))
    for name, e in (("ft", ev), ("base", base)):  # the corpus numbers, and the summary lines of the card
        for key in keys:
            assert abs(float(_corpus(scores[name], key, ones)[0]) - e["metrics"][key]) < tol, (name, key)
        np.testing.assert_allclose(scores[name]["sentence_chrf"], e["extra"]["generation"]["sentence_chrf"],
                                   atol=1e-5)
    for key in keys:
        assert f"- {NAMES[key]}: {fmt(ev['metrics'][key])}" in card, key

    def mixed(own: str, oth: str) -> Any:
        def fn(key: str, w_own: np.ndarray, w_other: np.ndarray) -> np.ndarray:
            if key in ("bleu", "chrf"):
                metric, s_own = scores[own][key]
                _, s_other = scores[oth][key]
                sums = w_own @ s_own + w_other @ s_other
                return np.asarray([metric._compute_score_from_stats(list(s)).score for s in sums])
            return 100 * (w_own @ scores[own][key] + w_other @ scores[oth][key]) / len(refs)
        return fn

    per_model = {"ft": lambda k, w: _corpus(scores["ft"], k, w), "base": lambda k, w: _corpus(scores["base"], k, w),
                 "base+ft": mixed("base", "ft"), "ft+base": mixed("ft", "base")}
    c = record["comparison"]
    rows = {r["key"]: r for r in (c or {}).get("metrics", [])}
    recomputed: dict[str, Any] = {}
    for key in keys if c else []:
        mine = recomputed[key] = _row(key, _scorer(per_model, key), len(refs), c)
        for part in ("base", "fine_tuned", "delta"):
            np.testing.assert_allclose(rows[key][part], mine[part], atol=tol, err_msg=f"{key} {part}")
        assert abs(rows[key]["p_value"] - mine["p_value"]) < 1e-12, key
        assert abs(c["generation"]["bootstrap_p_values"][key] - mine["bootstrap_p"]) < 1e-12, key
        line = (f"| {NAMES[key]} | {format_interval(rows[key]['base'])} | {format_interval(rows[key]['fine_tuned'])} "
                f"| {format_interval(rows[key]['delta'], signed=True)} | {format_p(rows[key]['p_value'], c['permutations'])} |")
        assert line in card, line
    if c and "perplexity" in rows:  # instruction data: the references' perplexity, from per-example NLL
        n = len(refs)
        nll = {"base": np.asarray(base["losses"]), "ft": np.asarray(ev["losses"])}
        tokens = {"base": np.asarray(base["extra"]["tokens"], float), "ft": np.asarray(ev["extra"]["tokens"], float)}
        for key in ("perplexity", "loss"):
            counts, _ = _resampling(n, c["bootstrap_samples"], c["seed"])
            boot = {m: _ratio(nll[m], tokens[m], key, counts) for m in ("base", "ft")}
            alpha = (1 - c["confidence"]) / 2
            np.testing.assert_allclose(rows[key]["fine_tuned"][1:], np.quantile(boot["ft"], [alpha, 1 - alpha]),
                                       rtol=1e-6)
            np.testing.assert_allclose(rows[key]["delta"][1:], np.quantile(boot["ft"] - boot["base"],
                                                                            [alpha, 1 - alpha]), rtol=1e-6, atol=1e-9)
    if c and c.get("generation"):  # the examples table: sentence chrF from sacreBLEU, base -> fine-tuned
        gen = c["generation"]
        delta = scores["ft"]["sentence_chrf"] - scores["base"]["sentence_chrf"]
        assert (gen["better"], gen["worse"], gen["same"]) == (int((delta > 1e-9).sum()), int((delta < -1e-9).sum()),
                                                              int((abs(delta) <= 1e-9).sum()))
        assert f"went up for {gen['better']}, down for {gen['worse']} and stayed the same for {gen['same']}" in card
        for example in gen["gains"] + gen["losses"]:
            i = example["index"]
            b, f = scores["base"]["sentence_chrf"][i], scores["ft"]["sentence_chrf"][i]
            assert abs(example["base_chrf"] - round(b, 4)) < 1e-3 and abs(example["fine_tuned_chrf"] - round(f, 4)) < 1e-3
            assert f"| {i} | " in card and f"{fmt(example['base_chrf'], 2)} → {fmt(example['fine_tuned_chrf'], 2)}" in card
        if gen["gains"]:
            top = max(range(len(refs)), key=lambda j: (delta[j], -j))
            assert gen["gains"][0]["index"] == top
        for key in ("bleu", "chrf"):
            if key in gen["bootstrap_p_values"]:
                assert f"{format_p(gen['bootstrap_p_values'][key])} ({NAMES[key]})" in card
    return recomputed
