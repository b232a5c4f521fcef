"""Instruction data for the causal-LM task: prompt/completion pairs (or chat messages), loss on the completion only,
and evaluation by generation.

Each example is a prompt, rendered from ``instruction.template`` (and the tokenizer's chat template when
``instruction.chat_template`` is set, or from a ``messages`` column), followed by its completion and the end token.
Training predicts only the completion tokens (the prompt's labels are -100). Evaluation does two things on the same
examples for the base and the fine-tuned model:

- teacher-forced perplexity of the references: exp(total NLL of the completion tokens and the end token given the
  prompt / their count), with bits per byte of the completion text beside it;
- a generated completion for every prompt (the run's GenerationConfig: greedy by default, stopping at the end
  token), scored against the reference with BLEU, chrF, ROUGE and exact match (:mod:`cardgen.tasks.generation`).

The causal-LM task hands over to this module when ``instruction.prompt_column`` or ``messages_column`` is set.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from cardgen.config import RunConfig
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
from cardgen.errors import ConfigError, DataError
from cardgen.models import LoadedModel
from cardgen.record import EvaluationRecord
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


# ---------------------------------------------------------------------------------------------------------------
# Prompts


def check_tokenizer(cfg: RunConfig, tokenizer: Any) -> None:
    """A chat template requested from a tokenizer without one is an error (not a silent plain prompt)."""
    if cfg.instruction.chat_template and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"instruction.chat_template is true, but the tokenizer of {cfg.model.name_or_path} has no "
                          "chat template", "set instruction.chat_template: false and write the prompt format into "
                                           "instruction.template, or use a chat (instruct) model")
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"the tokenizer of {cfg.model.name_or_path} has no end token, so a completion cannot end",
                          "use a checkpoint whose tokenizer has an eos token")


def render_prompt(cfg: RunConfig, tokenizer: Any, text: str) -> str:
    """The prompt the model sees for one source text: the template filled in, in the chat template when asked."""
    content = cfg.instruction.template.replace("{prompt}", text)
    if not cfg.instruction.chat_template:
        return content
    messages = ([{"role": "system", "content": cfg.instruction.system}] if cfg.instruction.system else [])
    return str(tokenizer.apply_chat_template(messages + [{"role": "user", "content": content}], tokenize=False,
                                             add_generation_prompt=True))


def _from_messages(value: Any, row: int, split: str, source: str, tokenizer: Any) -> tuple[str, str, str]:
    """(last user message, rendered prompt, target) of one ``messages`` cell; its last message is the target."""
    ok = isinstance(value, (list, tuple)) and len(value) >= 2 and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)
    if not ok or value[-1]["role"] != "assistant":
        raise DataError(f"row {row + 1} of the {split} data ({source}): `messages` must be a list of "
                        '{"role": ..., "content": ...} ending with an assistant message (the reference)',
                        "fix the messages column (chat format)")
    history = [{"role": m["role"], "content": m["content"]} for m in value[:-1]]
    user = next((m["content"] for m in reversed(history) if m["role"] == "user"), history[-1]["content"])
    prompt = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
    return user, str(prompt), value[-1]["content"]


def load_split_frames(cfg: RunConfig, tokenizer: Any, need_train: bool) -> tuple[dict[str, pd.DataFrame],
                                                                                 dict[str, str], dict[str, str]]:
    """Frames with ``source`` (the raw prompt text), ``prompt`` (as the model sees it) and ``completion``."""
    import pandas as pd

    ins, d = cfg.instruction, cfg.data
    frames, sources, files = load_frames(d)
    for split, frame in frames.items():
        if ins.messages_column:
            require_columns(frame, {ins.messages_column: "instruction.messages_column"}, split, sources[split])
            rows = [_from_messages(v, i, split, sources[split], tokenizer)
                    for i, v in enumerate(frame[ins.messages_column])]
            frames[split] = pd.DataFrame(rows, columns=["source", "prompt", "completion"])
            check_references(frames[split], "completion", split, sources[split])
            continue
        assert ins.prompt_column is not None
        require_columns(frame, {ins.prompt_column: "instruction.prompt_column",
                                ins.completion_column: "instruction.completion_column"}, split, sources[split])
        check_texts(frame, ins.prompt_column, split, sources[split])
        check_references(frame, ins.completion_column, split, sources[split])
        texts = [str(t) for t in frame[ins.prompt_column]]
        frames[split] = pd.DataFrame({"source": texts, "prompt": [render_prompt(cfg, tokenizer, t) for t in texts],
                                      "completion": [str(t) for t in frame[ins.completion_column]]})
    frames = split_and_subsample(frames, sources, d, None, need_train)
    return frames, sources, files


def prompt_ids(cfg: RunConfig, tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a rendered prompt (a chat-rendered prompt holds its special tokens as text)."""
    return list(tokenizer(prompt, add_special_tokens=not cfg.instruction.chat_template)["input_ids"])


def example_ids(cfg: RunConfig, tokenizer: Any, prompt: str, completion: str) -> tuple[list[int], int]:
    """(prompt, completion and end-token ids, where the completion starts), cut at ``data.max_length`` tokens."""
    head = prompt_ids(cfg, tokenizer, prompt)
    tail = list(tokenizer(completion, add_special_tokens=False)["input_ids"]) + [int(tokenizer.eos_token_id)]
    limit = cfg.data.max_length
    if len(head) > limit - 1:  # keep the end of an overlong prompt: the instruction is usually there
        head = head[len(head) - (limit - 1):]
    return (head + tail)[:limit], len(head)


def prepare_data(cfg: RunConfig, tokenizer: Any, need_train: bool, model_config: Any = None) -> PreparedData:
    """Check the tokenizer, metrics and lengths, then load, render, check, split and describe the examples."""
    check_tokenizer(cfg, tokenizer)
    check_metrics(cfg)
    frames, sources, files = load_split_frames(cfg, tokenizer, need_train)
    records = {}
    longest_prompt = 0
    for split, frame in frames.items():
        heads = [len(prompt_ids(cfg, tokenizer, p)) for p in frame["prompt"]]
        tails = [len(ids) + 1 for ids in tokenizer(frame["completion"].tolist(), add_special_tokens=False)["input_ids"]]
        lengths = [h + t for h, t in zip(heads, tails, strict=True)]
        longest_prompt = max([longest_prompt, *heads])
        records[split] = make_split_record(split, frame, sources[split], token_length=token_length_stats(lengths),
                                           num_truncated=sum(n > cfg.data.max_length for n in lengths))
    from cardgen.preflight import position_limit

    found = position_limit(model_config)
    if found is not None and longest_prompt + cfg.generation.max_new_tokens > found[0]:
        raise ConfigError(f"`generation.max_new_tokens` ({cfg.generation.max_new_tokens}) after the longest prompt "
                          f"({longest_prompt} tokens) is longer than the model takes ({found[0]} positions)",
                          f"set generation.max_new_tokens to at most {max(1, found[0] - longest_prompt)}")
    record = new_data_record(cfg.data, [], records, files, cfg.instruction.completion_column)
    record.text_column = cfg.instruction.messages_column or cfg.instruction.prompt_column or "prompt"
    from cardgen.data_report import data_report

    record.report = data_report(frames, ["source"])  # duplicate inputs, and inputs shared between splits (leakage)
    return PreparedData(frames=frames, label_names=[], record=record)


def features(frame: pd.DataFrame, tokenizer: Any, cfg: RunConfig) -> list[dict[str, list[int]]]:
    """One feature per example: ids, attention mask, labels (-100 on the prompt: only the completion is learnt)."""
    out = []
    for prompt, completion in zip(frame["prompt"], frame["completion"], strict=True):
        ids, start = example_ids(cfg, tokenizer, prompt, completion)
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                    "labels": [-100] * start + ids[start:]})
    return out


def train_dataset(frame: pd.DataFrame, tokenizer: Any, cfg: RunConfig, split: str) -> Any:
    """Training and validation examples alike: the validation loss is the references' teacher-forced NLL."""
    import datasets

    rows = features(frame, tokenizer, cfg)
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in rows[0]})


def _row_nll(logits: Any, labels: Any) -> Any:
    """(B, L) NLL of each predicted position (0 where the label is -100), float32, nats."""
    import torch
    import torch.nn.functional as F

    out = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
    if labels.shape[1] > 1:
        flat = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                               ignore_index=-100, reduction="none")
        out[:, 1:] = flat.view(labels.shape[0], -1)
    return out


def preprocess_logits_for_metrics(logits: Any, labels: Any) -> Any:
    """For the Trainer: per-position NLL instead of the vocabulary-wide logits of every validation token."""
    return _row_nll(logits[0] if isinstance(logits, tuple) else logits, labels)


def trainer_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """What the causal-LM Trainer needs on instruction data: validation keeps per-position NLL, not logits."""
    return {"preprocess_logits_for_metrics": preprocess_logits_for_metrics}


# ---------------------------------------------------------------------------------------------------------------
# Evaluation


def reference_nll(loaded: LoadedModel, frame: pd.DataFrame, cfg: RunConfig, progress: Progress | None,
                  description: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-example NLL (nats) of the completion and end tokens given the prompt, and how many tokens that is."""
    from cardgen.engine import run_engine

    feats = features(frame, loaded.tokenizer, cfg)
    labels = [f.pop("labels") for f in feats]
    width = max(len(x) for x in labels)

    def step(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        target = batch.pop("labels")[:, :batch["input_ids"].shape[1]]
        nll = _row_nll(model(**batch, use_cache=False).logits, target)
        return {"nll": nll.double().sum(dim=1), "tokens": (target[:, 1:] != -100).sum(dim=1)}

    padded = [x + [-100] * (width - len(x)) for x in labels]
    result = run_engine(loaded.model, feats, step, batch_size=cfg.evaluation.batch_size,
                        pad_token_id=loaded.tokenizer.pad_token_id or 0, extra={"labels": padded},
                        progress=progress, description=description)
    return np.asarray(result.outputs["nll"], dtype=np.float64), np.asarray(result.outputs["tokens"], dtype=np.int64)


def evaluate(loaded: LoadedModel, frame: pd.DataFrame, cfg: RunConfig, label_names: list[str], name: str,
             split: str, progress: Progress | None = None) -> EvaluationRecord:
    """Teacher-forced perplexity of the references, then one generated completion per prompt, scored."""
    start = time.perf_counter()
    tok, model = loaded.tokenizer, loaded.model
    nll, tokens = reference_nll(loaded, frame, cfg, progress, f"Perplexity of the references under {name}")
    gen_cfg = build_generation_config(cfg, tok, model)
    prompts = frame["prompt"].tolist()
    outputs, counts = generate(model, tok, [prompt_ids(cfg, tok, p) for p in prompts], gen_cfg,
                               batch_size=cfg.generation.batch_size or cfg.evaluation.batch_size, progress=progress,
                               description=f"Generating with {name} on {split}")
    references = frame["completion"].tolist()
    metrics, extra = score_outputs(cfg, sources=frame["source"].tolist(), prompts=prompts, references=references,
                                   outputs=outputs, output_tokens=counts, gen_cfg=gen_cfg,
                                   extra_metrics=check_metrics(cfg))
    total, count = float(nll.sum()), int(tokens.sum())
    byte_counts = [len(t.encode("utf-8")) for t in references]
    metrics.update(perplexity=math.exp(total / count) if count else float("nan"),
                   loss=total / count if count else float("nan"),
                   bits_per_byte=total / math.log(2) / sum(byte_counts) if sum(byte_counts) else float("nan"))
    extra.update(tokens=tokens.tolist(), bytes=byte_counts, total_nll=total, predicted_tokens=count,
                 method=method_text(cfg, len(frame), split, gen_cfg, "A completion was generated") + (
                     " Perplexity of the references: exp(total NLL of each reference's tokens and its end token, "
                     f"given its prompt, / their number) over all {len(frame)} examples ({count} tokens); bits per "
                     "byte = that NLL / ln 2 / UTF-8 bytes of the references."))
    return EvaluationRecord(model=name, split=split, num_examples=len(frame), metrics=metrics,
                            losses=[round(float(x), 6) for x in nll], extra=extra,
                            runtime_s=round(time.perf_counter() - start, 3))
