"""Shared fixtures: a tiny BERT checkpoint and tokenizer built in-process, tiny data sets, config writers.

Everything is offline and fast; the real packaged models are used only by tests marked ``slow``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POSITIVE = ["good", "great", "excellent", "wonderful", "lovely", "superb", "fine", "happy"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "horrible", "sad", "boring", "ugly"]
FILLER = ["the", "movie", "was", "really", "quite", "plot", "acting", "and", "a", "film", "story", "very", "it", "is"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(POSITIVE + NEGATIVE + FILLER)) + [
    ".", ",", "!", "?", "'", "-", "##s", "##ly", "##ed", "##ing", "not", "this", "that", "of", "to", "in", "paris",
    "france", "capital", "city", "what", "where", "who", "when", "which",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def make_sentence(rng: random.Random, positive: bool) -> str:
    """A short synthetic review whose sentiment is carried by one or two polar words."""
    words = rng.sample(FILLER, rng.randint(3, 7))
    polar = POSITIVE if positive else NEGATIVE
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(polar))
    return " ".join(words) + rng.choice([".", "!", ""])


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sentiment_rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        pos = rng.random() < 0.5
        rows.append({"text": make_sentence(rng, pos), "label": "positive" if pos else "negative"})
    return rows


def build_tiny_bert(path: Path, num_labels: int | None = None) -> Path:
    """Save a 2-layer, 32-wide BERT and a word-piece tokenizer to ``path`` (safetensors)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    # transformers 5 builds a fast tokenizer from a vocab dict (a vocab_file argument is silently ignored)
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True, model_max_length=128)
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, type_vocab_size=2, pad_token_id=0,
    )
    torch.manual_seed(0)
    model = BertForMaskedLM(config)  # a base checkpoint with an MLM head, like a real pretrained encoder
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT base checkpoint directory (built once per session)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/validation/test jsonl files of synthetic binary sentiment."""
    root = tmp_path_factory.mktemp("tiny-data")
    write_jsonl(root / "train.jsonl", sentiment_rows(160, 1))
    write_jsonl(root / "validation.jsonl", sentiment_rows(48, 2))
    write_jsonl(root / "test.jsonl", sentiment_rows(64, 3))
    return root


def base_config(model_path: Path, data_path: Path, out: Path, **sections: Any) -> dict[str, Any]:
    """A small, fast classification config as a dict; ``sections`` update it section by section."""
    cfg: dict[str, Any] = {
        "model": {"name_or_path": str(model_path)},
        "task": "text-classification",
        "data": {
            "train": str(data_path / "train.jsonl"), "validation": str(data_path / "validation.jsonl"),
            "test": str(data_path / "test.jsonl"), "label_names": ["negative", "positive"], "max_length": 32,
            "name": "tiny sentiment",
        },
        "training": {"learning_rate": 5e-3, "num_epochs": 4, "train_batch_size": 16, "eval_batch_size": 32,
                     "seed": 7},
        "compare": {"enabled": False},
        "benchmark": {"enabled": False},
        "card": {"model_name": "tiny-sentiment", "base_model": "test-org/tiny-bert"},
        "output": {"dir": str(out)},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture()
def make_config(tiny_bert: Path, tiny_data: Path, tmp_path: Path) -> Any:
    """``make_config(**sections) -> path`` of a YAML config for the tiny model and data, output in tmp_path/out."""

    def factory(name: str = "config.yaml", **sections: Any) -> Path:
        return write_config(tmp_path / name, base_config(tiny_bert, tiny_data, tmp_path / "out", **sections))

    return factory


@pytest.fixture(scope="session")
def tiny_run(tiny_bert: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One completed tiny training run (output directory), shared by tests that only read its results."""
    from cardgen.config import load_config
    from cardgen.pipeline import run

    root = tmp_path_factory.mktemp("tiny-run")
    cfg = load_config(data=base_config(tiny_bert, tiny_data, root / "out"))
    return run(cfg).output_dir
