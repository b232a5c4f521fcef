"""What the generation tasks share: the recorded GenerationConfig, batched generation, and scoring of the outputs.

Used by the ``seq2seq`` task and by the causal-LM task's instruction mode (:mod:`cardgen.tasks.instruction`). Both
models (base and fine-tuned) generate with the same settings on the same prompts; the outputs, their per-sentence
statistics (:mod:`cardgen.stats.text`) and the GenerationConfig go into the evaluation record, so every number in
the card can be recomputed from run.json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from cardgen.config import RunConfig
from cardgen.console import NullProgress, Progress
from cardgen.errors import ConfigError
from cardgen.record import GenerationOutputs, to_dict
from cardgen.stats.text import TextMetricSettings

# GenerationConfig fields recorded in run.json (with the token ids) even when they hold transformers' defaults.
RECORDED = ("max_new_tokens", "num_beams", "do_sample", "temperature", "top_p", "top_k", "repetition_penalty",
            "no_repeat_ngram_size", "length_penalty", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def text_settings(cfg: RunConfig) -> TextMetricSettings:
    """The metric settings of a config (what the signatures describe)."""
    g = cfg.generation
    return TextMetricSettings(lowercase=g.lowercase, bleu_tokenize=g.bleu_tokenize, chrf_word_order=g.chrf_word_order,
                              rouge_tokenizer=g.rouge_tokenizer)


def check_metrics(cfg: RunConfig) -> dict[str, Any]:
    """Check the metric libraries and settings, and load any ``evaluate:`` metric, before anything runs.

    Returns:
        The loaded ``evaluate:`` metrics by name (empty without any).

    Raises:
        ConfigError: a missing library, a tokenizer sacreBLEU does not know, or an evaluate metric that cannot load.
    """
    from cardgen.stats.text import check_settings

    for module, package in (("sacrebleu", "sacrebleu"), ("rouge_score", "rouge-score")):
        try:
            __import__(module)
        except ImportError as exc:
            raise ConfigError(f"task {cfg.task!r} scores generated text with {package}, which is not installed",
                              "pip install 'cardgen[generation]'") from exc
    try:
        check_settings(text_settings(cfg))
    except ValueError as exc:
        raise ConfigError(f"`generation.bleu_tokenize`: {exc}", "use 13a (the default), intl, char or none") from exc
    from cardgen.evaluate_metrics import load_extra_metrics

    return load_extra_metrics(cfg.generation.metrics)


def require_columns(frame: Any, columns: dict[str, str], split: str, source: str) -> None:
    """Each needed column present, else one error naming it, the columns the data has and the config key to set
    (``columns``: column name -> the key that names it, e.g. ``seq2seq.source_column``)."""
    for column, key in columns.items():
        if column not in frame.columns:
            from cardgen.errors import DataError

            raise DataError(f"column {column!r} is missing from the {split} data ({source}); it has: "
                            f"{', '.join(map(str, frame.columns))}", f"set {key} to the right column name")


def check_references(frame: Any, column: str, split: str, source: str) -> None:
    """Every reference a non-empty text: an empty reference cannot be scored (BLEU and chrF would count it)."""
    from cardgen.errors import DataError

    bad = [i for i, v in enumerate(frame[column]) if not isinstance(v, str) or not v.strip()]
    if bad:
        rows = ", ".join(str(i + 1) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise DataError(f"{len(bad)} empty reference(s) in column {column!r} of the {split} data ({source}), "
                        f"rows {rows}", "fill or remove those rows: an empty reference cannot be scored")


def build_generation_config(cfg: RunConfig, tokenizer: Any, model: Any) -> Any:
    """The transformers GenerationConfig both models generate with: the config's decoding settings and the model's
    own end, pad and decoder-start tokens (greedy, stop at the end token, unless the config says otherwise)."""
    from transformers import GenerationConfig

    g = cfg.generation
    own = getattr(model, "generation_config", None)
    eos = getattr(own, "eos_token_id", None)
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    kwargs: dict[str, Any] = {"max_new_tokens": g.max_new_tokens, "num_beams": g.num_beams, "do_sample": g.do_sample,
                              "repetition_penalty": g.repetition_penalty, "eos_token_id": eos, "pad_token_id": pad}
    if g.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = g.no_repeat_ngram_size
    if g.num_beams > 1:
        kwargs.update(length_penalty=g.length_penalty, early_stopping=True)
    if g.do_sample:
        kwargs.update(temperature=g.temperature, top_p=g.top_p, top_k=g.top_k)
    start = getattr(model.config, "decoder_start_token_id", None)
    if getattr(model.config, "is_encoder_decoder", False) and start is not None:
        kwargs["decoder_start_token_id"] = start
    try:
        return GenerationConfig(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"generation settings rejected by transformers: {str(exc).splitlines()[0]}",
                          "fix the generation section") from exc


def recorded_config(gen_cfg: Any) -> dict[str, Any]:
    """The GenerationConfig as run.json keeps it: every non-default value plus :data:`RECORDED`."""
    values = {k: v for k, v in gen_cfg.to_diff_dict().items() if not k.startswith("_") and k != "transformers_version"}
    for key in RECORDED:
        value = getattr(gen_cfg, key, None)
        if value is not None:
            values[key] = value
    return {k: values[k] for k in sorted(values)}


def first_end(row: list[int], eos: set[int]) -> int:
    """Tokens a generated row holds up to and including its first end token (the rest is padding)."""
    for i, token in enumerate(row):
        if token in eos:
            return i + 1
    return len(row)


def generate(model: Any, tokenizer: Any, inputs: Sequence[Sequence[int]], gen_cfg: Any, *, batch_size: int,
             progress: Progress | None = None, description: str = "Generating") -> tuple[list[str], list[int]]:
    """Outputs for every input (token ids): (decoded new text, new tokens up to the end token), in input order.

    Inputs are generated longest first in batches of ``batch_size``; decoder-only models get left padding (the new
    tokens follow the prompt directly), encoder-decoders right padding.
    """
    import numpy as np
    import torch

    progress = progress or NullProgress()
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    pad = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else 0
    eos_ids = gen_cfg.eos_token_id
    eos = set(eos_ids if isinstance(eos_ids, list) else [eos_ids] if eos_ids is not None else [])
    device = next(model.parameters()).device
    order = sorted(range(len(inputs)), key=lambda i: (-len(inputs[i]), i))
    texts: list[str] = [""] * len(inputs)
    counts: list[int] = [0] * len(inputs)
    progress.start_task(description, total=len(inputs))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for begin in range(0, len(order), batch_size):
                idx = order[begin:begin + batch_size]
                width = max(len(inputs[i]) for i in idx)
                ids = np.full((len(idx), width), pad, dtype=np.int64)
                mask = np.zeros((len(idx), width), dtype=np.int64)
                for row, i in enumerate(idx):
                    n = len(inputs[i])
                    cols = slice(0, n) if encoder_decoder else slice(width - n, width)
                    ids[row, cols], mask[row, cols] = inputs[i], 1
                out = model.generate(input_ids=torch.from_numpy(ids).to(device),
                                     attention_mask=torch.from_numpy(mask).to(device), generation_config=gen_cfg)
                new = out[:, 1:] if encoder_decoder else out[:, width:]
                for row, i in enumerate(idx):
                    tokens = new[row].tolist()
                    counts[i] = first_end(tokens, eos)
                    texts[i] = tokenizer.decode(tokens[:counts[i]], skip_special_tokens=True).strip()
                progress.advance(len(idx))
    finally:
        model.train(was_training)
        progress.end_task()
    return texts, counts


def score_outputs(cfg: RunConfig, *, sources: list[str], prompts: list[str], references: list[str],
                  outputs: list[str], output_tokens: list[int], gen_cfg: Any, truncated: int = 0,
                  extra_metrics: dict[str, Any] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics of the outputs (the configured ones) and the ``extra`` entries of the evaluation record.

    Returns:
        (metrics, extra): ``metrics`` holds the corpus values on a 0-100 scale (and ``gen_len``, the mean new tokens),
        ``extra["generation"]`` the :class:`GenerationOutputs`, ``extra["evaluate"]`` any evaluate metric's numbers.
    """
    from cardgen.stats.text import ROUGE_TYPES, score_texts

    settings = text_settings(cfg)
    scores = score_texts(outputs, references, settings)
    wanted = set(cfg.generation.metrics)
    keys: list[str] = [k for k in ("bleu", "chrf") if k in wanted]
    keys += list(ROUGE_TYPES) if "rouge" in wanted else []
    keys += ["exact_match"] if "exact_match" in wanted else []
    metrics: dict[str, float] = {k: scores.metrics[k] for k in keys}
    metrics["gen_len"] = sum(output_tokens) / max(1, len(output_tokens))
    record = GenerationOutputs(
        sources=list(sources), prompts=list(prompts), references=list(references), outputs=list(outputs),
        bleu_stats=scores.bleu_stats.tolist(), chrf_stats=scores.chrf_stats.tolist(),
        rouge={k: v.tolist() for k, v in scores.rouge.items()},
        exact=scores.exact.tolist(), sentence_chrf=scores.sentence_chrf.tolist(),
        output_tokens=list(output_tokens), signatures={k: v for k, v in scores.signatures.items() if k in keys},
        settings=dataclasses.asdict(settings), generation_config=recorded_config(gen_cfg),
        truncated_sources=truncated,
    )
    extra: dict[str, Any] = {"generation": to_dict(record)}
    if extra_metrics:
        from cardgen.evaluate_metrics import compute_extra

        extra["evaluate"] = compute_extra(extra_metrics, list(outputs), list(references))
    return metrics, extra


def method_text(cfg: RunConfig, n: int, split: str, gen_cfg: Any, what: str) -> str:
    """The card's line saying how the generation metrics were made."""
    g = cfg.generation
    decoding = (f"beam search ({g.num_beams} beams)" if g.num_beams > 1 else "greedy decoding") if not g.do_sample \
        else f"sampling (temperature {g.temperature:g}, top-p {g.top_p:g}, top-k {g.top_k})"
    return (f"{what} for each of the {n} {split} examples by {decoding}, at most {g.max_new_tokens} new tokens, "
            f"stopping at the end token {gen_cfg.eos_token_id}; corpus BLEU and chrF with sacreBLEU (from summed "
            "per-sentence statistics), ROUGE as the mean per-sentence F-measure with rouge-score (Porter stemmer), "
            "exact match after collapsing whitespace; all on a 0-100 scale.")
