"""Base versus fine-tuned for the generation tasks: BLEU, chrF, ROUGE and exact match with paired intervals and
tests over sentences, and the sentences that gained or lost the most.

Both models generated with the same GenerationConfig for the same prompts, and each evaluation kept its outputs and
sacreBLEU's per-sentence sufficient statistics. Corpus BLEU and chrF are functions of the summed statistics, so a
bootstrap resample (or a permutation) of sentences is one matrix product of count weights with the (n, d) statistics
(:mod:`cardgen.stats.sums`), and the corpus score of the resample is recomputed from its sums, never averaged over
sentences. ROUGE and exact match are means of per-sentence scores: the same machinery with columns (score, 1).

Per metric: the base's and the fine-tuned model's percentile intervals and the delta's (the same resampled sentences
for all three), the p-value of a paired permutation test (each sentence's two outputs swapped with probability 1/2:
sacreBLEU's approximate randomization), and the p-value of sacreBLEU's paired bootstrap test (Koehn 2004), computed
from the interval's resamples exactly as ``sacrebleu.significance`` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cardgen.record import (
    Comparison,
    EvaluationRecord,
    GenerationComparison,
    GenerationExample,
    GenerationOutputs,
    MetricComparison,
    from_dict,
)
from cardgen.stats import DEFAULT_PERMUTATIONS

PERMUTATION_TEST = "paired permutation test over examples (approximate randomization)"
INTERVAL_METHOD = ("percentile bootstrap over examples (corpus BLEU and chrF recomputed from each resample's summed "
                   "sacreBLEU statistics)")
GENERATION_KEYS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match")
TEXT_LIMIT = 300  # characters of each text kept in the examples table


def outputs_of(ev: EvaluationRecord) -> GenerationOutputs:
    """The typed generation outputs of an evaluation record."""
    return from_dict(GenerationOutputs, ev.extra["generation"])


def series(out: GenerationOutputs, key: str) -> tuple[Any, np.ndarray]:
    """(statistic, (n, d) per-sentence data) of one metric key."""
    from cardgen.stats.text import bleu_statistic, chrf_statistic, mean_statistic

    if key == "bleu":
        return bleu_statistic(), np.asarray(out.bleu_stats, dtype=np.float64)
    if key == "chrf":
        return chrf_statistic(int(out.settings.get("chrf_word_order", 0))), np.asarray(out.chrf_stats, dtype=float)
    scores = np.asarray(out.exact if key == "exact_match" else out.rouge[key], dtype=np.float64)
    return mean_statistic(), np.column_stack([scores, np.ones_like(scores)])


def bootstrap_p_value(boot_a: np.ndarray, boot_b: np.ndarray, delta: float) -> float:
    """sacreBLEU's paired bootstrap p-value: the resampled absolute differences, centred on their mean, that exceed
    the observed absolute difference (``sacrebleu.significance._paired_bs_test``). Two systems with the same score
    get p = 1 (sacreBLEU's formula would give its floor, 1 / (N + 1), when every resample differs by 0)."""
    if delta == 0:
        return 1.0
    diffs = np.abs(boot_b - boot_a)
    centred = diffs - diffs.mean()
    return float((np.count_nonzero(centred > abs(delta)) + 1) / (len(diffs) + 1))


def metric_row(key: str, base: GenerationOutputs, ft: GenerationOutputs, *, n_resamples: int, confidence: float,
               seed: int, n_permutations: int | None = None) -> tuple[MetricComparison, float]:
    """One metric's row (intervals, paired delta, permutation p-value) and its paired bootstrap p-value."""
    from cardgen.stats.intervals import percentile_interval
    from cardgen.stats.metrics import METRIC_NAMES
    from cardgen.stats.paired import paired_sum_test
    from cardgen.stats.sums import paired_bootstrap_sums

    stat, data_b = series(base, key)
    _, data_f = series(ft, key)
    boot_b, boot_f = paired_bootstrap_sums(stat, data_b, data_f, n_resamples, seed)
    point_b, point_f = float(stat.of_sums(data_b.sum(axis=0))), float(stat.of_sums(data_f.sum(axis=0)))
    ci_b = percentile_interval(point_b, boot_b, confidence)
    ci_f = percentile_interval(point_f, boot_f, confidence)
    test = paired_sum_test(stat, data_b, data_f, n_resamples=n_resamples, seed=seed, confidence=confidence,
                           n_permutations=n_permutations)
    row = MetricComparison(key=key, name=METRIC_NAMES.get(key, key), base=[ci_b.point, ci_b.low, ci_b.high],
                           fine_tuned=[ci_f.point, ci_f.low, ci_f.high], delta=[test.delta, test.low, test.high],
                           p_value=test.p_value, test=PERMUTATION_TEST)
    return row, bootstrap_p_value(boot_b, boot_f, test.delta)


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT - 1].rstrip() + "…"


def examples(base: GenerationOutputs, ft: GenerationOutputs, k: int) -> GenerationComparison:
    """The ``k`` sentences whose chrF rose most and the ``k`` whose chrF fell most (ties: earlier first)."""
    b, f = np.asarray(base.sentence_chrf, dtype=float), np.asarray(ft.sentence_chrf, dtype=float)
    delta = f - b

    def rows(indices: Any) -> list[GenerationExample]:
        return [GenerationExample(index=int(i), source=_short(ft.sources[i]), reference=_short(ft.references[i]),
                                  base=_short(base.outputs[i]), fine_tuned=_short(ft.outputs[i]),
                                  base_chrf=round(float(b[i]), 4), fine_tuned_chrf=round(float(f[i]), 4))
                for i in indices]

    order = np.argsort(-delta, kind="stable")
    gains = [i for i in order if delta[i] > 0][:k]
    losses = [i for i in np.argsort(delta, kind="stable") if delta[i] < 0][:k]
    tol = 1e-9
    return GenerationComparison(gains=rows(gains), losses=rows(losses), better=int((delta > tol).sum()),
                                worse=int((delta < -tol).sum()), same=int((abs(delta) <= tol).sum()))


def generation_comparison(task: str, base: EvaluationRecord, fine_tuned: EvaluationRecord, *, base_model: str,
                          fine_tuned_model: str, n_resamples: int, confidence: float, seed: int,
                          num_examples: int = 5, n_permutations: int | None = None) -> Comparison:
    """Intervals and paired tests of every generation metric both evaluations have, plus (instruction data) the
    references' perplexity rows, and the examples table.

    Raises:
        ValueError: If the two evaluations did not score the same references.
    """
    b_out, f_out = outputs_of(base), outputs_of(fine_tuned)
    if b_out.references != f_out.references:
        raise ValueError(f"base and fine-tuned scored different references ({len(b_out.references)} and "
                         f"{len(f_out.references)})")
    rows, boot_p = [], {}
    if "tokens" in fine_tuned.extra and "tokens" in base.extra:  # instruction data: perplexity of the references
        from cardgen.compare.documents import score_comparison

        rows += score_comparison("causal-lm", base, fine_tuned, base_model=base_model,
                                 fine_tuned_model=fine_tuned_model, n_resamples=n_resamples, confidence=confidence,
                                 seed=seed, n_permutations=n_permutations).metrics
        for row in rows:  # the same test: each example's two (NLL, tokens) swapped with probability 1/2
            row.test = PERMUTATION_TEST
    for key in (k for k in GENERATION_KEYS if k in fine_tuned.metrics and k in base.metrics):
        row, boot_p[key] = metric_row(key, b_out, f_out, n_resamples=n_resamples, confidence=confidence, seed=seed,
                                      n_permutations=n_permutations)
        rows.append(row)
    extra = examples(b_out, f_out, num_examples)
    extra.signatures, extra.bootstrap_p_values = dict(f_out.signatures), boot_p
    extra.generation_config = dict(f_out.generation_config)
    summary: dict[str, Any] = {r.key: {"base": r.base[0], "fine_tuned": r.fine_tuned[0], "delta": r.delta[0],
                                       "p_value": r.p_value} for r in rows}
    return Comparison(
        task=task, split=fine_tuned.split, num_examples=len(f_out.references), base_model=base_model,
        fine_tuned_model=fine_tuned_model, method="same-evaluation", confidence=confidence,
        bootstrap_samples=n_resamples, permutations=n_permutations or DEFAULT_PERMUTATIONS, seed=seed, interval_method=INTERVAL_METHOD,
        metrics=rows, tests={r.key: r.test or "" for r in rows}, summary=summary, generation=extra,
    )


def is_generation(task: str, sections: dict[str, Any]) -> bool:
    """Whether ``cardgen compare`` of this task (with FT's recorded sections) compares generated outputs."""
    instruction = sections.get("instruction") or {}
    return task == "seq2seq" or (task == "causal-lm" and bool(instruction.get("prompt_column")
                                                              or instruction.get("messages_column")))


def compare_checkpoints(base: str, fine_tuned: str, data_section: dict[str, Any], *, task: str, split: str,
                        batch_size: int, sections: dict[str, Any], n_resamples: int, confidence: float, seed: int,
                        progress: Any, n_permutations: int | None = None) -> Comparison:
    """``cardgen compare`` for seq2seq and instruction-tuned causal LMs: both checkpoints generate for the same
    prompts with the same GenerationConfig (FT's recorded ``generation`` section), then :func:`generation_comparison`.

    Raises:
        ModelError: If the base has freshly initialised weights (an encoder-decoder built from an encoder: its
            outputs would describe random cross-attention).
    """
    import dataclasses

    from cardgen.config import load_config
    from cardgen.errors import ModelError
    from cardgen.models import auto_config, load_tokenizer, pick_device, resolve_source
    from cardgen.tasks import get_task
    from cardgen.tasks.causal_lm import fresh_weights

    cfg = load_config(data={"model": {"name_or_path": base}, "task": task, "data": data_section, "training": None,
                            "evaluation": {"split": "test", "batch_size": batch_size},
                            "benchmark": {"enabled": False}, **sections})
    ft_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name_or_path=fine_tuned),
                                 seq2seq=dataclasses.replace(cfg.seq2seq, encoder_decoder=False, decoder=None))
    tasks = get_task(task)
    ft_tok = load_tokenizer(ft_cfg.model, *resolve_source(ft_cfg.model))
    frame = tasks.prepare_data(ft_cfg, ft_tok, False, auto_config(ft_cfg)).frames["test"]
    device = pick_device()
    evaluations = {}
    for name, run_cfg in (("base", cfg), ("fine-tuned", ft_cfg)):
        tokenizer = ft_tok if run_cfg is ft_cfg else load_tokenizer(run_cfg.model, *resolve_source(run_cfg.model))
        if run_cfg is cfg and task == "seq2seq":
            from cardgen.tasks.seq2seq import check_checkpoint

            check_checkpoint(cfg, auto_config(cfg))
        loaded = tasks.load_model(run_cfg, [], tokenizer=tokenizer)
        if loaded.newly_initialized:
            raise ModelError(f"{run_cfg.model.name_or_path} has freshly initialised weights (transformers initialised "
                             f"{len(loaded.newly_initialized)} of them: {fresh_weights(loaded)}), so its outputs "
                             "would describe random weights", "compare checkpoints that were trained for the task")
        loaded.model.to(device)
        evaluations[name] = tasks.evaluate(loaded, frame, run_cfg, [], name, split, progress)
        del loaded
    comparison = generation_comparison(task, evaluations["base"], evaluations["fine-tuned"], base_model=base,
                                       fine_tuned_model=fine_tuned, n_resamples=n_resamples, confidence=confidence,
                                       seed=seed, num_examples=cfg.generation.examples,
                                       n_permutations=n_permutations)
    comparison.base_evaluation = evaluations["base"]
    comparison.fine_tuned_evaluation = evaluations["fine-tuned"]
    return comparison
