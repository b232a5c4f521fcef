"""Tiny in-process models and data for the generation tests: a toy English-to-German "translation" (word by word
from a small dictionary), a random T5, a BERT-like encoder with both languages in its vocabulary, and a Llama-like
causal LM with a chat template. Word-level tokenizers built with the ``tokenizers`` library, so no file or network
is needed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

DICTIONARY = {
    "the": "die", "house": "haus", "file": "datei", "is": "ist", "not": "nicht", "big": "gross", "small": "klein",
    "found": "gefunden", "open": "offen", "a": "eine", "page": "seite", "number": "nummer", "valid": "gueltig",
    "date": "datum", "enter": "gib", "value": "wert", "error": "fehler", "reading": "lesen", "input": "eingabe",
    "and": "und", "or": "oder", "no": "kein", "list": "liste", "of": "von", "values": "werte", "name": "name",
}
EN = sorted(DICTIONARY)
DE = sorted(set(DICTIONARY.values()))
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")


def translation_rows(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` sentence pairs, 3 to 7 words each, translated word by word."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(EN) for _ in range(rng.randint(3, 7))]
        rows.append({"source": " ".join(words), "target": " ".join(DICTIONARY[w] for w in words)})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_translation_data(root: Path, train: int = 96, validation: int = 16, test: int = 24) -> Path:
    """train/validation/test jsonl files of toy pairs, no sentence in two splits."""
    seen: set[str] = set()
    splits = {"train": train, "validation": validation, "test": test}
    for i, (split, n) in enumerate(splits.items()):
        rows = [r for r in translation_rows(n * 2, 10 + i) if r["source"] not in seen][:n]
        seen.update(r["source"] for r in rows)
        write_jsonl(root / f"{split}.jsonl", rows)
    return root


def _word_level(vocab: list[str], special: dict[str, str], template: str | None = None) -> Any:
    """A fast tokenizer over whole words (lower-cased, split on whitespace and punctuation)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = list(dict.fromkeys([*special.values(), *vocab]))
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(tokens)}, unk_token=special["unk_token"]))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    if template:
        core.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(t, tokens.index(t)) for t in special.values() if t in template])
    return PreTrainedTokenizerFast(tokenizer_object=core, **special)


def build_tiny_t5(path: Path) -> Path:
    """A 2-layer, 32-wide random T5 and a word-level tokenizer that ends every text with </s> (safetensors)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = _word_level(EN + DE + [".", ",", ":"], {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
                      template="$A </s>")
    config = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=2,
                      decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def build_tiny_encoder(path: Path) -> Path:
    """A 2-layer, 32-wide random BERT whose word-level tokenizer knows both languages ([CLS] text [SEP])."""
    import torch
    from transformers import BertConfig, BertModel

    special = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
               "mask_token": "[MASK]"}
    tok = _word_level(EN + DE + [".", ","], special, template="[CLS] $A [SEP]")
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def build_tiny_chat_lm(path: Path, chat_template: bool = True) -> Path:
    """A 2-layer, 32-wide random Llama with a word-level tokenizer (and a chat template unless told otherwise)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    special = {"pad_token": "<|pad|>", "eos_token": "<|im_end|>", "unk_token": "<|unk|>", "bos_token": "<|im_start|>"}
    words = EN + DE + ["translate", "to", "german", ":", "user", "assistant", "system", "."]
    tok = _word_level(words, special)
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path
