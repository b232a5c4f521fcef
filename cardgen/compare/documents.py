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
ORDER = ("perplexity", "loss", "bits_per_byte", "exact_match", "f1")  # rows of the comparison, in this order


def supports(task: str) -> bool:
    """Whether :func:`score_comparison` knows the task."""
    return task in SERIES


def score_comparison(task: str, base: EvaluationRecord, fine_tuned: EvaluationRecord, *, base_model: str,
                     fine_tuned_model: str, n_resamples: int, confidence: float, seed: int,
                     keys: tuple[str, ...] | None = None, n_permutations: int | None = None) -> Comparison:
    """Intervals and paired tests of every per-document metric the two evaluations share.

    Args:
        task: "causal-lm", "masked-lm" or "question-answering".
        base: The base model's evaluation (per-document scores in ``losses`` / ``extra``).
        fine_tuned: The fine-tuned model's evaluation of the same documents.
        base_model: Name of the base checkpoint.
        fine_tuned_model: Name of the fine-tuned model.
        n_resamples: Bootstrap resamples.
        confidence: Coverage of the intervals.
        seed: Seed of the resampling.
        keys: Only these metrics (default: all the two evaluations share).
        n_permutations: Permutations behind each p-value (default :data:`cardgen.stats.DEFAULT_PERMUTATIONS`).

    Raises:
        ValueError: If the two evaluations did not score the same documents.
    """
    from cardgen.stats import DEFAULT_PERMUTATIONS
    from cardgen.stats.intervals import bootstrap_ci
    from cardgen.stats.metrics import METRIC_NAMES, ratio_of_sums
    from cardgen.stats.paired import paired_ratio_test

    n_perm = n_permutations or DEFAULT_PERMUTATIONS
    series_b, series_f = SERIES[task](base), SERIES[task](fine_tuned)
    rows = []
    for key in (k for k in ORDER if k in series_b and k in series_f and (keys is None or k in keys)):
        (num_b, den_b, transform), (num_f, den_f, _) = series_b[key], series_f[key]
        if len(num_b) != len(num_f):
            raise ValueError(f"base and fine-tuned scored {len(num_b)} and {len(num_f)} documents")
        stat = ratio_of_sums(transform)
        ci_b = bootstrap_ci(stat, num_b, den_b, n_resamples=n_resamples, confidence=confidence, seed=seed)
        ci_f = bootstrap_ci(stat, num_f, den_f, n_resamples=n_resamples, confidence=confidence, seed=seed)
        test = paired_ratio_test(num_b, den_b, num_f, den_f, transform, n_resamples=n_resamples, seed=seed,
                                 confidence=confidence, n_permutations=n_perm)
        rows.append(MetricComparison(
            key=key, name=METRIC_NAMES[key], base=[ci_b.point, ci_b.low, ci_b.high],
            fine_tuned=[ci_f.point, ci_f.low, ci_f.high], delta=[test.delta, test.low, test.high],
            p_value=test.p_value, test=PERMUTATION_TEST,
        ))
    summary: dict[str, Any] = {r.key: {"base": r.base[0], "fine_tuned": r.fine_tuned[0], "delta": r.delta[0],
                                       "p_value": r.p_value} for r in rows}
    return Comparison(
        task=task, split=fine_tuned.split, num_examples=len(series_f[rows[0].key][0]) if rows else 0,
        base_model=base_model, fine_tuned_model=fine_tuned_model, method="same-evaluation",
        confidence=confidence, bootstrap_samples=n_resamples, permutations=n_perm, seed=seed,
        interval_method=INTERVAL_METHOD, metrics=rows, tests={r.key: PERMUTATION_TEST for r in rows},
        summary=summary,
    )


HEADS = {"causal-lm": "language-modelling head", "masked-lm": "MLM head", "question-answering": "QA head"}


def compare_checkpoints(base: str, fine_tuned: str, data_section: dict[str, Any], *, task: str, split: str,
                        batch_size: int, sections: dict[str, Any], n_resamples: int, confidence: float, seed: int,
                        progress: Any, n_permutations: int | None = None) -> Comparison:
    """``cardgen compare`` for the LM and QA tasks: both checkpoints evaluated by the task on the same documents.

    Args:
        base: The base checkpoint.
        fine_tuned: The fine-tuned checkpoint (a `cardgen run` output directory brings its lm/qa settings).
        data_section: The ``data`` config section (test file or Hub dataset, columns, max length).
        task: "causal-lm", "masked-lm" or "question-answering".
        split: The split's name in the results.
        batch_size: Windows or examples per forward pass.
        sections: ``lm`` / ``qa`` config sections to evaluate with (FT's recorded ones).
        n_resamples: Bootstrap resamples.
        confidence: Coverage of the intervals.
        seed: Seed of the resampling.
        progress: Where to report progress.
        n_permutations: Permutations behind each p-value (default 10,000).

    Raises:
        ModelError: If a checkpoint lacks the task's trained head (its numbers would describe random weights),
            or, for masked LM, the two tokenizers differ (different masks: perplexities not comparable).
    """
    import dataclasses

    from cardgen.config import load_config
    from cardgen.errors import ModelError
    from cardgen.models import load_tokenizer, pick_device, resolve_source
    from cardgen.tasks import get_task
    from cardgen.tasks.causal_lm import fresh_weights

    cfg = load_config(data={"model": {"name_or_path": base}, "task": task, "data": data_section, "training": None,
                            "evaluation": {"split": "test", "batch_size": batch_size},
                            "benchmark": {"enabled": False}, **sections})
    ft_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name_or_path=fine_tuned))
    tasks = get_task(task)
    base_tok = load_tokenizer(cfg.model, *resolve_source(cfg.model))
    ft_tok = load_tokenizer(ft_cfg.model, *resolve_source(ft_cfg.model))
    same_vocab = base_tok.get_vocab() == ft_tok.get_vocab()
    if task == "masked-lm" and not same_vocab:
        raise ModelError("the two checkpoints have different vocabularies, so they cannot see the same masked "
                         "tokens and their masked-LM perplexities are not comparable",
                         "compare checkpoints that share a tokenizer")
    frame = tasks.prepare_data(cfg, ft_tok, False, None).frames["test"]
    device = pick_device()
    evaluations = {}
    for name, run_cfg, tokenizer in (("base", cfg, base_tok), ("fine-tuned", ft_cfg, ft_tok)):
        loaded = tasks.load_model(run_cfg, [], tokenizer=tokenizer)
        if loaded.newly_initialized:  # checked before any evaluation of this model
            raise ModelError(f"{run_cfg.model.name_or_path} has no trained {HEADS[task]} (transformers initialised "
                             f"{len(loaded.newly_initialized)} weights fresh: {fresh_weights(loaded)}), so its "
                             "numbers would describe random weights",
                             f"compare checkpoints that have a trained {HEADS[task]}")
        loaded.model.to(device)
        evaluations[name] = tasks.evaluate(loaded, frame, run_cfg, [], name, split, progress)
        del loaded
    keys = None if same_vocab or task != "causal-lm" else ("bits_per_byte",)
    comparison = score_comparison(task, evaluations["base"], evaluations["fine-tuned"], base_model=base,
                                  fine_tuned_model=fine_tuned, n_resamples=n_resamples, confidence=confidence,
                                  seed=seed, keys=keys, n_permutations=n_permutations)
    comparison.max_length = data_section.get("max_length")
    comparison.base_evaluation = evaluations["base"]
    comparison.fine_tuned_evaluation = evaluations["fine-tuned"]
    return comparison


