"""Masked language modelling: fine-tune with dynamic masking; perplexity = exp(mean loss over masked tokens).

Training masks each batch afresh (``lm.mlm_probability`` of the tokens, or of the words with
``lm.whole_word_masking``; of those 80% become the mask token, 10% a random token, 10% stay). Evaluation masks are
fixed: example ``i`` of a split is masked with a generator seeded by ``(lm.mask_seed, i)``, so the base model,
the fine-tuned model, every epoch and every run see exactly the same masked inputs. Perplexity is
exp(total NLL of the masked tokens / number of masked tokens), token-weighted over the split.

When the checkpoint has no trained MLM head (transformers initialises it fresh, as for the packaged MiniLM), the
base model's perplexity describes a random head: the record and the card say so.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from cardgen.config import RunConfig
from cardgen.console import Progress
from cardgen.data import PreparedData
from cardgen.errors import ModelError
from cardgen.models import LoadedModel, load_pretrained
from cardgen.record import EvaluationRecord
from cardgen.tasks.causal_lm import PadCollator, mark_base, prepare_text_data

if TYPE_CHECKING:
    import pandas as pd

NAME = "masked-lm"
PIPELINE_TAG = "fill-mask"
DEFAULT_METRIC = "perplexity"
GREATER_IS_BETTER = False
MASK_REPLACE = 0.8  # of the selected tokens: replaced by the mask token
RANDOM_REPLACE = 0.1  # replaced by a random token; the rest stay as they are


def effective_max_length(cfg: RunConfig, tokenizer: Any) -> int:
    """``data.max_length`` capped by what the tokenizer's model accepts."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return min(cfg.data.max_length, limit)
    return cfg.data.max_length


def _require_mask_token(tokenizer: Any, name: str) -> None:
    if tokenizer.mask_token_id is None:
        raise ModelError(f"the tokenizer of {name} has no mask token, so it cannot do masked-LM",
                         "use an encoder checkpoint (BERT, RoBERTa, ...) or task causal-lm")


def prepare_data(cfg: RunConfig, tokenizer: Any, need_train: bool, model_config: Any = None) -> PreparedData:
    """Text splits for masked LM; each text is truncated at ``data.max_length`` tokens."""
    _require_mask_token(tokenizer, cfg.model.name_or_path)
    return prepare_text_data(cfg, tokenizer, need_train, effective_max_length(cfg, tokenizer),
                             add_special_tokens=True)


# ---------------------------------------------------------------------------------------------------------------
# Masking


def continuation_prefix(tokenizer: Any) -> str | None:
    """``"##"`` for WordPiece vocabularies (a token that continues a word starts with it), else None (byte-level BPE
    and SentencePiece mark the start of a word instead, with ``Ġ`` or ``▁``)."""
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    prefix = getattr(model, "continuing_subword_prefix", None)
    if type(model).__name__ == "WordPiece" and prefix:
        return str(prefix)
    if model is None and any(t.startswith("##") for t in tokenizer.get_vocab()):
        return "##"
    return None


def word_starts(tokens: list[str], special: np.ndarray, prefix: str | None) -> np.ndarray:
    """True where a token begins a word (the first token after a special token always does)."""
    if prefix:
        starts = np.asarray([not t.startswith(prefix) for t in tokens], dtype=bool)
    else:
        starts = np.asarray([t.startswith(("Ġ", "▁", " ")) for t in tokens], dtype=bool)
    after_special = np.concatenate([[True], special[:-1]])
    return (starts | after_special) & ~special


def mask_tokens(ids: np.ndarray, special: np.ndarray, starts: np.ndarray | None, rng: np.random.Generator,
                probability: float, mask_id: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Select tokens (or whole words when ``starts`` is given) with ``probability``, at least one; 80/10/10 rule.

    The generator is always advanced by the same amount for the same length, whatever is selected.

    Returns:
        ``(input_ids, labels)``: the masked input and the original ids at the selected positions, -100 elsewhere.
    """
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    candidate = ~special
    if starts is not None:
        unit = np.cumsum(starts & candidate) - 1  # word index of each token
        n_units = int(unit[candidate].max()) + 1 if candidate.any() else 0
    else:
        unit = np.cumsum(candidate) - 1
        n_units = int(candidate.sum())
    draw = rng.random(max(n_units, 1))
    fallback = int(rng.integers(max(n_units, 1)))
    chosen = draw[:n_units] < probability
    if n_units and not chosen.any():
        chosen[fallback] = True
    selected = candidate & chosen[np.clip(unit, 0, max(n_units - 1, 0))] if n_units else np.zeros(n, dtype=bool)
    how = rng.random(n)
    random_ids = rng.integers(vocab_size, size=n)
    labels = np.where(selected, ids, -100)
    masked = ids.copy()
    masked[selected & (how < MASK_REPLACE)] = mask_id
    swap = selected & (how >= MASK_REPLACE) & (how < MASK_REPLACE + RANDOM_REPLACE)
    masked[swap] = random_ids[swap]
    return masked, labels


class Masker:
    """Masks token-id sequences for one tokenizer and config."""

    def __init__(self, tokenizer: Any, cfg: RunConfig) -> None:
        _require_mask_token(tokenizer, cfg.model.name_or_path)
        self.tokenizer = tokenizer
        self.probability = cfg.lm.mlm_probability
        self.whole_word = cfg.lm.whole_word_masking
        self.prefix = continuation_prefix(tokenizer) if self.whole_word else None
        self.mask_id = int(tokenizer.mask_token_id)
        self.vocab_size = len(tokenizer)

    def __call__(self, ids: list[int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        special = np.asarray(self.tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True),
                             dtype=bool)
        starts = None
        if self.whole_word:
            starts = word_starts(self.tokenizer.convert_ids_to_tokens(ids), special, self.prefix)
        return mask_tokens(np.asarray(ids), special, starts, rng, self.probability, self.mask_id, self.vocab_size)


def encode(frame: pd.DataFrame, tokenizer: Any, cfg: RunConfig) -> list[dict[str, list[int]]]:
    """Token ids per text, truncated at the max length, unpadded."""
    enc = tokenizer(frame["text"].tolist(), truncation=True, max_length=effective_max_length(cfg, tokenizer))
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [{k: list(enc[k][i]) for k in keys} for i in range(len(frame))]


def eval_features(frame: pd.DataFrame, tokenizer: Any, cfg: RunConfig) -> list[dict[str, list[int]]]:
    """The split with its fixed evaluation masks: example ``i`` masked by a generator seeded (mask_seed, i)."""
    masker = Masker(tokenizer, cfg)
    feats = encode(frame, tokenizer, cfg)
    for i, feat in enumerate(feats):
        masked, labels = masker(feat["input_ids"], np.random.default_rng([cfg.lm.mask_seed, i]))
        feat["input_ids"] = masked.tolist()
        feat["labels"] = labels.tolist()
    return feats


def mask_fingerprint(features: list[dict[str, list[int]]]) -> str:
    """sha256 of the masked inputs and labels, to show that two evaluations saw the same masks."""
    digest = hashlib.sha256()
    for feat in features:
        digest.update(np.asarray(feat["input_ids"], dtype=np.int64).tobytes())
        digest.update(np.asarray(feat["labels"], dtype=np.int64).tobytes())
    return digest.hexdigest()


class MaskingCollator:
    """Masks training examples afresh each batch (seeded); examples that carry labels (the fixed evaluation masks)
    are only padded."""

    def __init__(self, tokenizer: Any, cfg: RunConfig) -> None:
        self.masker = Masker(tokenizer, cfg)
        self.rng = np.random.default_rng(cfg.training.seed if cfg.training else 0)
        self.pad = PadCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        out = []
        for feat in features:
            feat = dict(feat)
            if "labels" not in feat:
                masked, labels = self.masker(list(feat["input_ids"]), self.rng)
                feat["input_ids"], feat["labels"] = masked.tolist(), labels.tolist()
            out.append(feat)
        return self.pad(out)


def train_dataset(frame: pd.DataFrame, tokenizer: Any, cfg: RunConfig, split: str) -> Any:
    """Training: unmasked token ids (masked per batch). Validation: the fixed evaluation masks."""
    import datasets

    rows = encode(frame, tokenizer, cfg) if split == "train" else eval_features(frame, tokenizer, cfg)
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in rows[0]})


def collator(tokenizer: Any, cfg: RunConfig) -> Any:
    """Dynamic masking for training, padding for the pre-masked validation examples."""
    return MaskingCollator(tokenizer, cfg)


def load_model(cfg: RunConfig, label_names: list[str] | None = None, model_cfg: Any = None,
               tokenizer: Any = None) -> LoadedModel:
    """The checkpoint with its MLM head (newly initialised when the checkpoint has none)."""
    from transformers import AutoModelForMaskedLM

    loaded = load_pretrained(AutoModelForMaskedLM, model_cfg or cfg.model, tokenizer=tokenizer)
    # The MLM loss is a mean over the batch's masked tokens that ignores ``num_items_in_batch``: let the Trainer
    # scale it for gradient accumulation and DDP itself (as for classification).
    loaded.model.accepts_loss_kwargs = False
    return loaded


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def masked_nll(logits: Any, labels: Any) -> Any:
    """Per-position NLL (float32) at the masked positions, 0 elsewhere; only masked rows of the logits are used."""
    import torch
    import torch.nn.functional as F

    out = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
    where = labels != -100
    if bool(where.any()):
        out[where] = F.cross_entropy(logits[where].float(), labels[where], reduction="none")
    return out


def preprocess_logits_for_metrics(logits: Any, labels: Any) -> Any:
    """For the Trainer: per-position NLL instead of the full logits."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return masked_nll(logits, labels)


def trainer_metrics(cfg: RunConfig, label_names: list[str]) -> Any:
    """``compute_metrics``: perplexity over the masked tokens of the validation split (fixed masks)."""

    def compute(eval_pred: Any) -> dict[str, float]:
        import torch

        preds = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        labels = np.asarray(eval_pred.label_ids)
        mask = labels != -100
        if preds.ndim == 2:
            total = float(np.asarray(preds, dtype=np.float64)[mask].sum())
        else:
            total = 0.0
            for i in range(0, len(preds), 16):
                nll = masked_nll(torch.from_numpy(np.asarray(preds[i:i + 16])), torch.from_numpy(labels[i:i + 16]))
                total += float(nll.double().sum())
        count = int(mask.sum())
        return {"perplexity": math.exp(total / count) if count else float("nan")}

    return compute


def _step(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    labels = batch.pop("labels")
    logits = model(**batch).logits
    nll = masked_nll(logits, labels)
    return {"nll": nll.sum(dim=1), "count": (labels != -100).sum(dim=1)}


def evaluate(loaded: LoadedModel, frame: pd.DataFrame, cfg: RunConfig, label_names: list[str], name: str,
             split: str, progress: Progress | None = None) -> EvaluationRecord:
    """Masked-token perplexity with the fixed evaluation masks; per-example NLL sums and counts kept."""
    from cardgen.engine import run_engine

    features = eval_features(frame, loaded.tokenizer, cfg)
    result = run_engine(loaded.model, features, _step, batch_size=cfg.evaluation.batch_size,
                        pad_token_id=loaded.tokenizer.pad_token_id or 0, progress=progress,
                        description=f"Masked-LM perplexity of {name} on {split}")
    nll = result.outputs["nll"].astype(np.float64)
    counts = result.outputs["count"].astype(np.int64)
    total, count = float(nll.sum()), int(counts.sum())
    metrics = {"perplexity": math.exp(total / count) if count else float("nan"),
               "loss": total / count if count else float("nan")}
    unit = "words" if cfg.lm.whole_word_masking else "tokens"
    method = (f"Perplexity = exp(mean NLL over the {count} masked tokens) of {len(frame)} {split} texts cut at "
              f"{effective_max_length(cfg, loaded.tokenizer)} tokens; {cfg.lm.mlm_probability:g} of the {unit} "
              f"selected (80% mask token, 10% random, 10% kept), fixed masks from seed {cfg.lm.mask_seed}, "
              "identical for every model and epoch.")
    return EvaluationRecord(
        model=name, split=split, num_examples=len(frame), metrics=metrics, losses=[round(float(x), 6) for x in nll],
        runtime_s=round(result.seconds, 3),
        extra={"tokens": counts.tolist(), "total_nll": total, "masked_tokens": count,
               "mask_seed": cfg.lm.mask_seed, "mlm_probability": cfg.lm.mlm_probability,
               "whole_word_masking": cfg.lm.whole_word_masking, "mask_fingerprint": mask_fingerprint(features),
               "padding_efficiency": round(result.padding_efficiency, 4), "method": method},
    )


def evaluate_base(loaded: LoadedModel, frame: pd.DataFrame, cfg: RunConfig, label_names: list[str], split: str,
                  progress: Progress | None = None) -> EvaluationRecord:
    """The base model before fine-tuning, on the same masks; flagged when its MLM head is newly initialised."""
    return mark_base(evaluate(loaded, frame, cfg, label_names, "base", split, progress), loaded, "MLM head")


