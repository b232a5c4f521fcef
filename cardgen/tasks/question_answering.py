"""Extractive question answering on SQuAD-format data, scored with the official SQuAD exact match and F1.

Data: one row per question with ``id``, ``question``, ``context`` and ``answers`` = ``{"text": [...],
"answer_start": [...]}`` (the Hub's ``squad`` / ``squad_v2`` layout; the official nested JSON is flattened too).
Question and context are tokenised together, the context cut into windows of ``data.max_length`` tokens that
overlap by ``qa.doc_stride`` tokens; offset mappings take predicted token spans back to character spans.
Post-processing scores the ``qa.n_best`` best starts and ends of every window, keeps spans inside the context of at
most ``qa.max_answer_length`` tokens, and answers with the best one; with ``qa.version_2`` the answer is empty
when the null score (start and end on the CLS token) beats the best span, as in SQuAD v2.

Exact match and F1 follow the official evaluation script: answers are normalised (lower case, punctuation and the
articles a/an/the removed, whitespace collapsed), the best score over the gold answers counts, and a question
without a gold answer scores 1 only for an empty prediction. Both are reported in percent, as SQuAD does.
"""

from __future__ import annotations

import collections
import re
import string
from dataclasses import dataclass
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
    require_columns,
    split_and_subsample,
    token_length_stats,
)
from cardgen.errors import ConfigError, DataError
from cardgen.models import LoadedModel, load_pretrained
from cardgen.record import EvaluationRecord
from cardgen.tasks.causal_lm import mark_base

if TYPE_CHECKING:
    import pandas as pd

NAME = "question-answering"
PIPELINE_TAG = "question-answering"
DEFAULT_METRIC = "f1"
GREATER_IS_BETTER = True


# ---------------------------------------------------------------------------------------------------------------
# The official SQuAD metric


_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and articles, collapse whitespace (the official SQuAD normalisation)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised strings (1.0 when both are empty, 0.0 when only one is)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(prediction: str, golds: list[str]) -> tuple[float, float]:
    """(exact match, F1) of one prediction: the best over the gold answers; no gold answer means ``[""]``."""
    refs = [g for g in golds if normalize_answer(g)] or [""]
    return max(exact_match_score(prediction, g) for g in refs), max(f1_score(prediction, g) for g in refs)


def squad_metrics(predictions: list[str], golds: list[list[str]]) -> dict[str, float]:
    """Exact match and F1 in percent, plus has-answer / no-answer breakdowns when both kinds occur."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    scores = np.asarray([squad_scores(p, g) for p, g in zip(predictions, golds, strict=True)]).reshape(-1, 2)
    has = np.asarray([any(normalize_answer(x) for x in g) for g in golds], dtype=bool)
    out = {"exact_match": 100 * float(scores[:, 0].mean()) if len(scores) else 0.0,
           "f1": 100 * float(scores[:, 1].mean()) if len(scores) else 0.0}
    if has.any() and (~has).any():
        out.update(has_answer_exact_match=100 * float(scores[has, 0].mean()),
                   has_answer_f1=100 * float(scores[has, 1].mean()),
                   no_answer_exact_match=100 * float(scores[~has, 0].mean()))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Data


def _flatten_official(frame: pd.DataFrame) -> pd.DataFrame:
    """The official nested SQuAD JSON (data -> paragraphs -> qas) as one row per question."""
    import pandas as pd

    rows = []
    for _, article in frame.iterrows():
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                rows.append({"id": qa.get("id"), "title": article.get("title", ""), "context": para["context"],
                             "question": qa["question"],
                             "answers": {"text": [a["text"] for a in answers],
                                         "answer_start": [int(a["answer_start"]) for a in answers]}})
    return pd.DataFrame(rows)


def _answers(value: Any, row: int, split: str, source: str, column: str) -> dict[str, list[Any]]:
    if isinstance(value, dict) and "text" in value and "answer_start" in value:
        texts = [str(t) for t in list(value["text"])]
        starts = [int(s) for s in list(value["answer_start"])]
        if len(texts) == len(starts):
            return {"text": texts, "answer_start": starts}
    raise DataError(f"row {row + 1} of the {split} data ({source}): `{column}` must be "
                    '{"text": [...], "answer_start": [...]} of equal lengths', "fix the answers column (SQuAD format)")


def _normalise_frame(frame: pd.DataFrame, cfg: RunConfig, split: str, source: str) -> pd.DataFrame:
    q = cfg.qa
    if "paragraphs" in frame.columns and q.context_column not in frame.columns:
        frame = _flatten_official(frame)
        qcol, ccol, acol, icol = "question", "context", "answers", "id"
    else:
        qcol, ccol, acol, icol = q.question_column, q.context_column, q.answers_column, q.id_column
    require_columns(frame, [qcol, ccol, acol], split, source)
    check_texts(frame, qcol, split, source)
    check_texts(frame, ccol, split, source)
    ids = [str(v) for v in frame[icol]] if icol in frame.columns else [f"{split}-{i}" for i in range(len(frame))]
    answers = [_answers(v, i, split, source, acol) for i, v in enumerate(frame[acol])]
    contexts = frame[ccol].tolist()
    bad = [(i, a) for i, (c, ans) in enumerate(zip(contexts, answers, strict=True))
           for a in zip(ans["text"], ans["answer_start"], strict=True) if c[a[1]:a[1] + len(a[0])] != a[0]]
    if bad:
        i, (text, start) = bad[0]
        raise DataError(f"{len(bad)} answer(s) in the {split} data ({source}) are not at their answer_start in the "
                        f"context, e.g. row {i + 1}: {text!r} at {start}", "fix answer_start (a character offset)")
    unanswerable = sum(not a["text"] for a in answers)
    if unanswerable and not q.version_2:
        raise DataError(f"{unanswerable} question(s) in the {split} data ({source}) have no answer",
                        "set qa.version_2: true for SQuAD v2-style data with unanswerable questions")
    import pandas as pd

    return pd.DataFrame({"id": ids, "question": frame[qcol].tolist(), "context": contexts, "answers": answers})


def effective_max_length(cfg: RunConfig, tokenizer: Any) -> int:
    """``data.max_length`` capped by what the tokenizer's model accepts."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return min(cfg.data.max_length, limit)
    return cfg.data.max_length


def load_split_frames(cfg: RunConfig, need_train: bool) -> tuple[dict[str, pd.DataFrame], dict[str, str],
                                                                 dict[str, str]]:
    """The normalised, split and subsampled frames (deterministic for a config)."""
    d = cfg.data
    frames, sources, files = load_frames(d)
    for split in list(frames):
        frames[split] = _normalise_frame(frames[split], cfg, split, sources[split])
    frames = split_and_subsample(frames, sources, d, None, need_train)
    return frames, sources, files


def prepare_data(cfg: RunConfig, tokenizer: Any, need_train: bool, model_config: Any = None) -> PreparedData:
    """Load, normalise, check, split and describe SQuAD-format data."""
    max_len = effective_max_length(cfg, tokenizer)
    if cfg.qa.doc_stride >= max_len:
        raise ConfigError(f"`qa.doc_stride` ({cfg.qa.doc_stride}) must be smaller than data.max_length ({max_len})",
                          "the stride is the overlap between windows of a long context, e.g. a quarter of it")
    frames, sources, files = load_split_frames(cfg, need_train)
    records = {}
    for split, frame in frames.items():
        enc = tokenizer(frame["question"].tolist(), frame["context"].tolist(), truncation=False)
        lengths = [len(ids) for ids in enc["input_ids"]]
        records[split] = make_split_record(split, frame, sources[split], token_length=token_length_stats(lengths),
                                           label_distribution={
                                               "answerable": int(sum(bool(a["text"]) for a in frame["answers"])),
                                               "unanswerable": int(sum(not a["text"] for a in frame["answers"]))})
    record = new_data_record(cfg.data, [], records, files, cfg.qa.answers_column)
    record.max_length = max_len
    return PreparedData(frames=frames, label_names=[], record=record)


@dataclass
class Features:
    """The windows of a split: model inputs plus what post-processing needs to map spans back to text."""

    inputs: list[dict[str, list[int]]]  # input_ids, attention_mask (, token_type_ids)
    example: list[int]  # the example (row) each window belongs to
    offsets: list[list[tuple[int, int] | None]]  # character span of each context token, None elsewhere
    cls_index: list[int]
    start_positions: list[int]
    end_positions: list[int]


def featurize(frame: pd.DataFrame, tokenizer: Any, cfg: RunConfig) -> Features:
    """Tokenise question + context into overlapping windows with offsets and gold token positions."""
    pad_right = tokenizer.padding_side == "right"
    questions = [q.lstrip() for q in frame["question"].tolist()]
    contexts = frame["context"].tolist()
    try:
        enc = tokenizer(questions if pad_right else contexts, contexts if pad_right else questions,
                        truncation="only_second" if pad_right else "only_first",
                        max_length=effective_max_length(cfg, tokenizer), stride=cfg.qa.doc_stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    except Exception as exc:  # the tokenizers library raises its own exception types for a stride that is too long
        raise DataError(f"cannot cut the contexts into windows: {str(exc).splitlines()[0]}",
                        "lower qa.doc_stride or raise data.max_length (questions take room in every window)") from exc
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    context_id = 1 if pad_right else 0
    feats = Features([], [], [], [], [], [])
    for i, sample in enumerate(enc["overflow_to_sample_mapping"]):
        ids = enc["input_ids"][i]
        seq = enc.sequence_ids(i)
        offsets = [tuple(o) if seq[k] == context_id else None for k, o in enumerate(enc["offset_mapping"][i])]
        cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        start_tok = end_tok = cls
        answers = frame["answers"].iloc[sample]
        if answers["text"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            inside = [k for k, o in enumerate(offsets) if o is not None]
            if inside and offsets[inside[0]][0] <= start_char and offsets[inside[-1]][1] >= end_char:  # type: ignore[index]
                start_tok = next(k for k in inside if offsets[k][1] > start_char)  # type: ignore[index]
                end_tok = next(k for k in reversed(inside) if offsets[k][0] < end_char)  # type: ignore[index]
        feats.inputs.append({k: list(enc[k][i]) for k in keys})
        feats.example.append(int(sample))
        feats.offsets.append(offsets)
        feats.cls_index.append(cls)
        feats.start_positions.append(start_tok)
        feats.end_positions.append(end_tok)
    return feats


def train_dataset(frame: pd.DataFrame, tokenizer: Any, cfg: RunConfig, split: str) -> Any:
    """Windows with gold start/end token positions (the CLS token when the answer is not in the window)."""
    import datasets

    feats = featurize(frame, tokenizer, cfg)
    columns: dict[str, list[Any]] = {k: [f[k] for f in feats.inputs] for k in feats.inputs[0]}
    columns["start_positions"] = feats.start_positions
    columns["end_positions"] = feats.end_positions
    return datasets.Dataset.from_dict(columns)


def collator(tokenizer: Any, cfg: RunConfig) -> Any:
    """Dynamic padding to the longest window of each batch."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer)


def load_model(cfg: RunConfig, label_names: list[str] | None = None, model_cfg: Any = None,
               tokenizer: Any = None) -> LoadedModel:
    """The checkpoint with a span-prediction head (newly initialised for a plain encoder)."""
    from transformers import AutoModelForQuestionAnswering

    loaded = load_pretrained(AutoModelForQuestionAnswering, model_cfg or cfg.model, tokenizer=tokenizer)
    loaded.model.accepts_loss_kwargs = False  # its loss is a per-window mean: the Trainer must scale it
    return loaded


# ---------------------------------------------------------------------------------------------------------------
# Post-processing and evaluation


def best_answers(frame: pd.DataFrame, feats: Features, start_logits: np.ndarray, end_logits: np.ndarray,
                 cfg: RunConfig) -> list[str]:
    """The best answer text of every example from the start/end logits of its windows (n-best search)."""
    q = cfg.qa
    by_example: dict[int, list[int]] = collections.defaultdict(list)
    for f, ex in enumerate(feats.example):
        by_example[ex].append(f)
    contexts = frame["context"].tolist()
    out = []
    for ex in range(len(frame)):
        best_score, best_text = -np.inf, ""
        null_score = np.inf
        for f in by_example.get(ex, []):
            offsets = feats.offsets[f]
            n = len(offsets)
            s, e = np.asarray(start_logits[f][:n], dtype=np.float64), np.asarray(end_logits[f][:n], dtype=np.float64)
            cls = feats.cls_index[f]
            null_score = min(null_score, s[cls] + e[cls])
            k = min(q.n_best, n)
            starts = np.argpartition(-s, k - 1)[:k]
            ends = np.argpartition(-e, k - 1)[:k]
            for i in starts:
                if offsets[i] is None:
                    continue
                for j in ends:
                    if offsets[j] is None or j < i or j - i + 1 > q.max_answer_length:
                        continue
                    score = s[i] + e[j]
                    if score > best_score:
                        best_score = score
                        best_text = contexts[ex][offsets[i][0]:offsets[j][1]]  # type: ignore[index]
        if q.version_2 and null_score > best_score:
            best_text = ""
        out.append(best_text)
    return out


def _pad_logits(values: Any, width: int) -> Any:
    import torch.nn.functional as F

    return F.pad(values.float(), (0, width - values.shape[1]), value=-1e4)


def predict(loaded: LoadedModel, frame: pd.DataFrame, cfg: RunConfig, progress: Progress | None = None,
            description: str = "Answering") -> tuple[list[str], Features, float]:
    """Answers for every question of ``frame`` (and the windows, and the seconds it took)."""
    from cardgen.engine import run_engine

    feats = featurize(frame, loaded.tokenizer, cfg)
    width = effective_max_length(cfg, loaded.tokenizer)

    def step(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        out = model(**batch)
        return {"start": _pad_logits(out.start_logits, width), "end": _pad_logits(out.end_logits, width)}

    result = run_engine(loaded.model, feats.inputs, step, batch_size=cfg.evaluation.batch_size,
                        pad_token_id=loaded.tokenizer.pad_token_id or 0, progress=progress, description=description)
    answers = best_answers(frame, feats, result.outputs["start"], result.outputs["end"], cfg)
    return answers, feats, result.seconds


def _golds(frame: pd.DataFrame) -> list[list[str]]:
    return [list(a["text"]) for a in frame["answers"]]


def check_window_order(feats: Features, label_ids: Any) -> None:
    """cardgen's Trainer evaluates in dataset order (see ``train._trainer_class``); the gold positions the Trainer
    passes back prove it, so a reordering sampler can never pair one question's logits with another's context."""
    gold_start, gold_end = (np.asarray(x).reshape(-1) for x in label_ids[:2])
    start, end = np.asarray(feats.start_positions), np.asarray(feats.end_positions)
    if len(gold_start) != len(start) or not ((start == gold_start).all() and (end == gold_end).all()):
        raise RuntimeError(f"the Trainer's {len(gold_start)} validation windows do not match, in order, the "
                           f"{len(start)} rebuilt from the config (an evaluation sampler that reorders?)")


def trainer_metrics(cfg: RunConfig, label_names: list[str]) -> Any:
    """``compute_metrics``: EM and F1 on the validation split after post-processing.

    The Trainer passes only logits and gold positions. The windows' offsets are rebuilt here from the config (data
    loading and splitting are deterministic), once, at the first evaluation; the rows arrive in window order, which
    the gold positions check.
    """
    cache: dict[str, Any] = {}

    def compute(eval_pred: Any) -> dict[str, float]:
        if not cache:
            from cardgen.models import load_tokenizer, resolve_source

            tokenizer = load_tokenizer(cfg.model, *resolve_source(cfg.model))
            frame = load_split_frames(cfg, need_train=True)[0]["validation"]
            cache.update(frame=frame, feats=featurize(frame, tokenizer, cfg))
        feats = cache["feats"]
        check_window_order(feats, eval_pred.label_ids)
        start, end = (np.asarray(x, dtype=np.float64) for x in eval_pred.predictions[:2])
        answers = best_answers(cache["frame"], feats, start, end, cfg)
        return squad_metrics(answers, _golds(cache["frame"]))

    return compute


def evaluate(loaded: LoadedModel, frame: pd.DataFrame, cfg: RunConfig, label_names: list[str], name: str,
             split: str, progress: Progress | None = None) -> EvaluationRecord:
    """EM and F1 (percent) with per-question predictions and scores kept."""
    answers, feats, seconds = predict(loaded, frame, cfg, progress, f"Answering with {name} on {split}")
    golds = _golds(frame)
    metrics = squad_metrics(answers, golds)
    scores = [squad_scores(a, g) for a, g in zip(answers, golds, strict=True)]
    windows = len(feats.example)
    method = (f"Official SQuAD{' v2' if cfg.qa.version_2 else ''} exact match and F1 (percent) on {len(frame)} "
              f"{split} questions: windows of {effective_max_length(cfg, loaded.tokenizer)} tokens with doc stride "
              f"{cfg.qa.doc_stride} ({windows} windows), best span from the {cfg.qa.n_best} best starts and ends, "
              f"at most {cfg.qa.max_answer_length} tokens"
              + ("; empty answer when the null score wins." if cfg.qa.version_2 else "."))
    return EvaluationRecord(
        model=name, split=split, num_examples=len(frame), metrics=metrics, runtime_s=round(seconds, 3),
        extra={"ids": frame["id"].tolist(), "answers": answers, "exact": [s[0] for s in scores],
               "f1": [round(s[1], 6) for s in scores], "has_answer": [bool(g) for g in golds],
               "num_windows": windows, "method": method},
    )


def evaluate_base(loaded: LoadedModel, frame: pd.DataFrame, cfg: RunConfig, label_names: list[str], split: str,
                  progress: Progress | None = None) -> EvaluationRecord:
    """The base model before fine-tuning; flagged when its QA head is newly initialised."""
    return mark_base(evaluate(loaded, frame, cfg, label_names, "base", split, progress), loaded,
                     "question-answering head")


