"""Sequence-to-sequence generation (translation, summarization, text2text), scored with BLEU, chrF, ROUGE and exact
match against one reference per example.

Data: a source and a target column (``seq2seq.source_column`` / ``target_column``). Training is the transformers
``Seq2SeqTrainer`` with ``predict_with_generate``: every epoch's validation row holds the generation metrics, made
with the same GenerationConfig as the final evaluation. The model is ``AutoModelForSeq2SeqLM``; with
``seq2seq.encoder_decoder`` an encoder-only checkpoint (BERT, MiniLM) becomes an ``EncoderDecoderModel`` whose
decoder is the same checkpoint with fresh cross-attention, so its base model's outputs mean nothing (the card says
so, as for a fresh classification or MLM head).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from cardgen.config import ModelConfig, RunConfig
from cardgen.console import Progress
from cardgen.data import (
    PreparedData,
    check_texts,
    load_frames,
    make_split_record,
    new_data_record,
    split_and_subsample,
    token_length_stats,
)
from cardgen.errors import ConfigError, ModelError
from cardgen.models import LoadedModel, load_pretrained
from cardgen.record import EvaluationRecord
from cardgen.tasks.causal_lm import mark_base
from cardgen.tasks.generation import (
    build_generation_config,
    check_metrics,
    check_references,
    generate,
    method_text,
    require_columns,
    score_outputs,
)

if TYPE_CHECKING:
    import pandas as pd

NAME = "seq2seq"
PIPELINE_TAG = "text2text-generation"
DEFAULT_METRIC = "chrf"
GREATER_IS_BETTER = True
PIPELINE_TAGS = {"translation": "translation", "summarization": "summarization", "text2text": "text2text-generation"}


def pipeline_tag(cfg: RunConfig) -> str:
    """The Hub pipeline tag of the run: translation, summarization or text2text-generation (``seq2seq.kind``)."""
    return PIPELINE_TAGS[cfg.seq2seq.kind]


# ---------------------------------------------------------------------------------------------------------------
# Checkpoint checks and data


def check_checkpoint(cfg: RunConfig, model_config: Any) -> None:
    """A seq2seq checkpoint, or an encoder with ``seq2seq.encoder_decoder``; anything else is one clear error."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if model_config is None:
        return
    kind = getattr(model_config, "model_type", "?")
    name = cfg.model.name_or_path
    encoder_decoder = bool(getattr(model_config, "is_encoder_decoder", False))
    decoder_only = kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    if cfg.seq2seq.encoder_decoder:
        if encoder_decoder:
            raise ConfigError(f"{name} is already an encoder-decoder ({kind}); seq2seq.encoder_decoder builds one "
                              "from an encoder-only checkpoint", "remove seq2seq.encoder_decoder")
        if decoder_only:
            raise ConfigError(f"seq2seq.encoder_decoder needs an encoder-only checkpoint (BERT-like); {name} is a "
                              f"decoder-only language model ({kind})",
                              "use task: causal-lm with instruction.prompt_column / completion_column instead")
        return
    if encoder_decoder:
        return
    hint = ("use task: causal-lm with instruction.prompt_column / completion_column (instruction tuning)"
            if decoder_only else "set seq2seq.encoder_decoder: true to build an encoder-decoder from this encoder "
                                 "(its cross-attention starts random, so the base model's scores mean nothing)")
    raise ModelError(f"{name} is not a seq2seq (encoder-decoder) checkpoint: model type {kind!r}", hint)


def _check_lengths(cfg: RunConfig, model_config: Any) -> None:
    """Sources against the encoder's positions; training targets and generated outputs (after the decoder's start
    token) against the decoder's."""
    from cardgen.preflight import position_limit

    s, new = cfg.seq2seq, cfg.generation.max_new_tokens
    encoder = getattr(model_config, "encoder", model_config)
    decoder = getattr(model_config, "decoder", model_config)
    checks = (("seq2seq.max_source_length", s.max_source_length, 0, encoder, "encoder"),
              ("seq2seq.max_target_length", s.max_target_length, 0, decoder, "decoder"),
              ("generation.max_new_tokens", new, 1, decoder, "decoder"))
    for key, value, extra, config, part in checks:
        found = position_limit(config) if config is not None else None
        if found is not None and value + extra > found[0]:
            what = f"`{key}` ({value}) after the decoder's start token is {value + 1}" if extra else f"`{key}` is {value}"
            raise ConfigError(f"{what} tokens, longer than the {part} takes ({found[0]} positions, {found[1]})",
                              f"set {key} to at most {found[0] - extra}")


def load_split_frames(cfg: RunConfig, need_train: bool) -> tuple[dict[str, pd.DataFrame], dict[str, str],
                                                                 dict[str, str]]:
    """The splits as frames with ``source`` and ``target`` columns, split and subsampled (deterministic)."""
    d, s = cfg.data, cfg.seq2seq
    frames, sources, files = load_frames(d)
    for split, frame in frames.items():
        require_columns(frame, {s.source_column: "seq2seq.source_column", s.target_column: "seq2seq.target_column"},
                        split, sources[split])
        check_texts(frame, s.source_column, split, sources[split])
        check_references(frame, s.target_column, split, sources[split])
        frames[split] = frame[[s.source_column, s.target_column]].set_axis(["source", "target"], axis=1)\
            .reset_index(drop=True)
    frames = split_and_subsample(frames, sources, d, None, need_train)
    return frames, sources, files


def prepare_data(cfg: RunConfig, tokenizer: Any, need_train: bool, model_config: Any = None) -> PreparedData:
    """Check the checkpoint, lengths and metrics, then load, check, split and describe the source/target pairs."""
    check_checkpoint(cfg, model_config)
    if model_config is not None:
        _check_lengths(cfg, model_config)
    check_metrics(cfg)
    frames, sources, files = load_split_frames(cfg, need_train)
    records = {}
    for split, frame in frames.items():
        lengths = [len(x) for x in tokenizer([cfg.seq2seq.source_prefix + t for t in frame["source"]])["input_ids"]]
        records[split] = make_split_record(split, frame, sources[split], token_length=token_length_stats(lengths),
                                           num_truncated=sum(n > cfg.seq2seq.max_source_length for n in lengths))
    record = new_data_record(cfg.data, [], records, files, cfg.seq2seq.target_column)
    record.text_column = cfg.seq2seq.source_column
    from cardgen.data_report import data_report

    record.report = data_report(frames, ["source"])  # duplicate inputs, and inputs shared between splits (leakage)
    record.max_length = cfg.seq2seq.max_source_length
    return PreparedData(frames=frames, label_names=[], record=record)


# ---------------------------------------------------------------------------------------------------------------
# Model


def load_model(cfg: RunConfig, label_names: list[str] | None = None, model_cfg: Any = None,
               tokenizer: Any = None) -> LoadedModel:
    """``AutoModelForSeq2SeqLM``, or an ``EncoderDecoderModel`` built from an encoder; with the run's
    GenerationConfig set on it (what the Trainer's validation and the saved model use)."""
    from transformers import AutoModelForSeq2SeqLM

    if cfg.seq2seq.encoder_decoder:
        loaded = _encoder_decoder(cfg, model_cfg or cfg.model, tokenizer)
    else:
        loaded = load_pretrained(AutoModelForSeq2SeqLM, model_cfg or cfg.model, tokenizer=tokenizer)
    loaded.model.generation_config = build_generation_config(cfg, loaded.tokenizer, loaded.model)
    return loaded


def _encoder_decoder(cfg: RunConfig, model_cfg: ModelConfig, tokenizer: Any) -> LoadedModel:
    """Encoder and decoder loaded from the checkpoint(s) (the decoder with causal masks and fresh cross-attention),
    joined; start, pad and end tokens set on the config (CLS, PAD, SEP for BERT-like tokenizers)."""
    import dataclasses
    import warnings

    from transformers import AutoModel, AutoModelForCausalLM, EncoderDecoderModel

    from cardgen.models import load_tokenizer, resolve_source

    # EncoderDecoderModel warns on every loss it computes that v4.12 moved the loss out of the decoder: noise here.
    warnings.filterwarnings("ignore", message="Version v4.12.0 introduces", category=FutureWarning)
    start = time.perf_counter()
    encoder = load_pretrained(AutoModel, model_cfg, tokenizer=tokenizer)
    dec_cfg = dataclasses.replace(model_cfg, name_or_path=cfg.seq2seq.decoder) if cfg.seq2seq.decoder else model_cfg
    if cfg.seq2seq.decoder:
        dec_tok = load_tokenizer(dec_cfg, *resolve_source(dec_cfg))
        if dec_tok.get_vocab() != encoder.tokenizer.get_vocab():
            raise ConfigError(f"seq2seq.decoder {cfg.seq2seq.decoder} has another vocabulary than the encoder",
                              "use a decoder checkpoint with the encoder's tokenizer")
    decoder = load_pretrained(AutoModelForCausalLM, dec_cfg, tokenizer=encoder.tokenizer, is_decoder=True,
                              add_cross_attention=True)
    model = EncoderDecoderModel(encoder=encoder.model, decoder=decoder.model)
    tok = encoder.tokenizer
    first = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    end = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    if first is None or end is None or tok.pad_token_id is None:
        raise ModelError(f"{model_cfg.name_or_path}'s tokenizer has no start (CLS/BOS), end (SEP/EOS) or pad token "
                         "to build an encoder-decoder with", "use a BERT-like encoder checkpoint")
    decoder_config: Any = model.config.decoder
    for config in (model.config, decoder_config):
        config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = first, tok.pad_token_id, end
    model.config.vocab_size = decoder_config.vocab_size
    model.eval()
    newly = [f"encoder.{k}" for k in encoder.newly_initialized] + [f"decoder.{k}" for k in decoder.newly_initialized]
    return LoadedModel(model=model, tokenizer=tok, newly_initialized=newly,
                       load_seconds=time.perf_counter() - start, source=model_cfg.name_or_path)


# ---------------------------------------------------------------------------------------------------------------
# Training


def _sources(frame: pd.DataFrame, cfg: RunConfig) -> list[str]:
    return [cfg.seq2seq.source_prefix + str(t) for t in frame["source"]]


def _encode_sources(frame: pd.DataFrame, tokenizer: Any, cfg: RunConfig) -> Any:
    return tokenizer(_sources(frame, cfg), truncation=True, max_length=cfg.seq2seq.max_source_length)


def train_dataset(frame: pd.DataFrame, tokenizer: Any, cfg: RunConfig, split: str) -> Any:
    """Tokenised sources and target labels (a target never starts with the decoder start token: the model
    prepends it when it shifts the labels right)."""
    import datasets

    enc = _encode_sources(frame, tokenizer, cfg)
    labels = tokenizer(text_target=[str(t) for t in frame["target"]], truncation=True,
                       max_length=cfg.seq2seq.max_target_length)["input_ids"]
    if cfg.seq2seq.encoder_decoder:  # BERT-like tokenizers add [CLS], the decoder start token cardgen sets
        first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        labels = [ids[1:] if ids and ids[0] == first else ids for ids in labels]
    columns = {k: list(enc[k]) for k in ("input_ids", "attention_mask") if k in enc}
    columns["labels"] = labels
    return datasets.Dataset.from_dict(columns)


def collator(tokenizer: Any, cfg: RunConfig) -> Any:
    """Dynamic padding of sources (pad token) and labels (-100, ignored by the loss)."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)


def training_arguments(cfg: RunConfig) -> tuple[Any, dict[str, Any]]:
    """The Trainer's argument class and what the task adds: validation generates (``predict_with_generate``) with
    the model's GenerationConfig, so each epoch's row has BLEU, chrF and ROUGE."""
    from transformers import Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments, {"predict_with_generate": True}


def trainer_base() -> Any:
    """The Trainer class this task trains with."""
    from transformers import Seq2SeqTrainer

    return Seq2SeqTrainer


def trainer_metrics(cfg: RunConfig, label_names: list[str]) -> Any:
    """``compute_metrics``: the generation metrics of the validation outputs against the validation references.

    The Trainer passes generated ids in dataset order (cardgen's Trainer evaluates in order); the references are the
    raw target texts of the validation split, rebuilt from the config (loading and splitting are deterministic), so
    an uncased tokenizer or truncation does not change them.
    """
    cache: dict[str, Any] = {}

    def compute(eval_pred: Any) -> dict[str, float]:
        import numpy as np

        from cardgen.stats.text import score_texts
        from cardgen.tasks.generation import first_end as _first_end
        from cardgen.tasks.generation import text_settings

        if not cache:
            from cardgen.models import load_tokenizer, resolve_source

            cache["tokenizer"] = load_tokenizer(cfg.model, *resolve_source(cfg.model))
            cache["references"] = load_split_frames(cfg, need_train=True)[0]["validation"]["target"].tolist()
        tok, refs = cache["tokenizer"], cache["references"]
        preds = np.asarray(eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple)
                           else eval_pred.predictions)
        if len(preds) != len(refs):
            raise RuntimeError(f"{len(preds)} validation outputs for {len(refs)} references")
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        rows = [row[1:] for row in np.where(preds < 0, pad, preds).tolist()]  # without the decoder start token
        ends = {tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id}
        lengths = [_first_end(row, ends) for row in rows]
        outputs = [tok.decode(row[:n], skip_special_tokens=True).strip() for row, n in zip(rows, lengths, strict=True)]
        scores = score_texts(outputs, refs, text_settings(cfg))
        return {**scores.metrics, "gen_len": float(np.mean(lengths))}

    return compute


# ---------------------------------------------------------------------------------------------------------------
# Evaluation


def evaluate(loaded: LoadedModel, frame: pd.DataFrame, cfg: RunConfig, label_names: list[str], name: str,
             split: str, progress: Progress | None = None) -> EvaluationRecord:
    """Generate an output for every source and score the outputs against the targets."""
    start = time.perf_counter()
    tok, model = loaded.tokenizer, loaded.model
    gen_cfg = build_generation_config(cfg, tok, model)
    enc = _encode_sources(frame, tok, cfg)
    outputs, counts = generate(model, tok, enc["input_ids"], gen_cfg,
                               batch_size=cfg.generation.batch_size or cfg.evaluation.batch_size, progress=progress,
                               description=f"Generating with {name} on {split}")
    full = tok(_sources(frame, cfg))["input_ids"]
    metrics, extra = score_outputs(
        cfg, sources=[str(t) for t in frame["source"]], prompts=_sources(frame, cfg),
        references=[str(t) for t in frame["target"]], outputs=outputs, output_tokens=counts, gen_cfg=gen_cfg,
        truncated=sum(len(x) > cfg.seq2seq.max_source_length for x in full), extra_metrics=check_metrics(cfg))
    extra["method"] = method_text(cfg, len(frame), split, gen_cfg, "One output was generated")
    return EvaluationRecord(model=name, split=split, num_examples=len(frame), metrics=metrics, extra=extra,
                            runtime_s=round(time.perf_counter() - start, 3))


def evaluate_base(loaded: LoadedModel, frame: pd.DataFrame, cfg: RunConfig, label_names: list[str], split: str,
                  progress: Progress | None = None) -> EvaluationRecord:
    """The base model before fine-tuning, with the same prompts and GenerationConfig; flagged when part of it is
    freshly initialised (an encoder-decoder built from an encoder)."""
    ev = evaluate(loaded, frame, cfg, label_names, "base", split, progress)
    return mark_base(ev, loaded, "decoder cross-attention" if cfg.seq2seq.encoder_decoder else "weights")
