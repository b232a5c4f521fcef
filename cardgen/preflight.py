"""Preflight: every length a run (or ``cardgen bench``) will feed the model, checked against the model's positions
before anything runs.

The model's own limit is its position table (``config.max_position_embeddings``, ``n_positions``, ...), not only
the tokenizer's ``model_max_length``: a tokenizer saved without that setting lets any length through, and the
model then fails in its first forward pass, which in a run may be hours in (the benchmark after training). One
function names every length and one check compares each with the limit, so every path is covered at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cardgen.config import RunConfig
from cardgen.errors import ConfigError

POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")
# Models that number positions from padding_idx + 1 (RoBERTa's 514 positions hold 512 tokens).
PADDING_OFFSET_TYPES = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text",
                        "xmod", "roberta-prelayernorm", "ibert", "mpnet"}
HUGE = 1_000_000  # transformers' "no limit" model_max_length is 1e30


@dataclass(frozen=True)
class Length:
    """One length the model will see, with the key or flag that sets it."""

    key: str
    value: int
    what: str = "tokens"


def position_limit(model_config: Any) -> tuple[int, str] | None:
    """The most positions the model can take and the config field that says so, or None when it has none."""
    if model_config is None:
        return None
    text_config = getattr(model_config, "text_config", None)
    for config in (model_config, text_config):
        for key in POSITION_KEYS:
            value = getattr(config, key, None) if config is not None else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                if getattr(config, "model_type", None) in PADDING_OFFSET_TYPES:
                    pad = getattr(config, "pad_token_id", None)
                    value -= (pad if isinstance(pad, int) and pad >= 0 else 1) + 1
                return value, f"config.{key}"
    return None


def tokenizer_limit(tokenizer: Any) -> int | None:
    """The tokenizer's ``model_max_length`` when it is a real limit (not transformers' 'unlimited')."""
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < HUGE else None


def run_lengths(cfg: RunConfig, tokenizer: Any) -> list[Length]:
    """Every length a run feeds the model: inputs, causal-LM blocks and generations, the benchmark's rows."""
    lengths: list[Length] = []
    if cfg.task == "causal-lm":
        block = cfg.lm.block_size or cfg.data.max_length
        lengths.append(Length("lm.block_size" if cfg.lm.block_size else "data.max_length", block))
        for i, prompt in enumerate(cfg.lm.prompts):
            n = len(tokenizer(prompt)["input_ids"]) if tokenizer is not None else 0
            lengths.append(Length(f"lm.max_new_tokens ({cfg.lm.max_new_tokens}) with lm.prompts[{i}] ({n} tokens)",
                                  n + cfg.lm.max_new_tokens))
    elif cfg.task == "seq2seq":  # sources are cut at seq2seq.max_source_length (the task checks the decoder's)
        lengths.append(Length("seq2seq.max_source_length", cfg.seq2seq.max_source_length))
    else:
        # The tasks cut inputs at data.max_length, capped by the tokenizer's own limit when it has one.
        cap = tokenizer_limit(tokenizer)
        lengths.append(Length("data.max_length", min(cfg.data.max_length, cap) if cap else cfg.data.max_length))
    if cfg.benchmark.enabled:
        lengths.append(Length("benchmark.sequence_length", cfg.benchmark.sequence_length))
        if cfg.task == "causal-lm":
            lengths.append(generation_length(cfg.benchmark.sequence_length, "benchmark.sequence_length"))
    return lengths


def generation_length(sequence_length: int, key: str) -> Length:
    """The longest sequence the speed benchmark's generation scenario builds (prompt plus new tokens)."""
    from cardgen.config import NEW_TOKENS, PROMPT_LENGTH

    prompt = min(PROMPT_LENGTH, sequence_length)
    return Length(f"{key} (generation: a {prompt}-token prompt and {NEW_TOKENS} new tokens)", prompt + NEW_TOKENS)


def check_lengths(lengths: list[Length], model_config: Any) -> None:
    """Compare each length with the model's positions.

    Raises:
        ConfigError: The first length longer than the model can take, naming its key and the limit.
    """
    found = position_limit(model_config)
    if found is None:
        return
    limit, source = found
    for length in lengths:
        if length.value > limit:
            flag = length.key.split(" ")[0]
            raise ConfigError(f"`{length.key}` is {length.value} tokens, longer than the model takes "
                              f"({limit} positions, {source})", f"set {flag} to at most {limit}")


def check_run(cfg: RunConfig, model_config: Any, tokenizer: Any) -> None:
    """Preflight of ``cardgen run``: every length of the config against the model's positions, and every tracker
    of ``training.report_to`` installed."""
    from cardgen.trackers import check_trackers

    check_lengths(run_lengths(cfg, tokenizer), model_config)
    check_trackers(cfg)


def check_bench(model_config: Any, sequence_length: int, generates: bool) -> None:
    """Preflight of ``cardgen bench``: ``--seq-len`` (and the generation it implies) against the positions."""
    lengths = [Length("--seq-len", sequence_length)]
    if generates:
        lengths.append(generation_length(sequence_length, "--seq-len"))
    check_lengths(lengths, model_config)
