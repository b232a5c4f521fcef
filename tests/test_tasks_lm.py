"""Causal and masked LM: perplexity against brute force, fixed evaluation masks, and tiny end-to-end runs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import build_tiny_bert, make_sentence, write_config, write_jsonl

from cardgen.config import load_config

CORPUS_WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "in", "park", "movie", "was", "very", "good",
                "bad", "plot", "and", "acting", "paris", "is", "capital", "of", "france", "it", "story"]


def lm_texts(n: int, seed: int) -> list[str]:
    """Short repetitive sentences a tiny model can learn quickly."""
    rng = random.Random(seed)
    return [make_sentence(rng, rng.random() < 0.5).capitalize() for _ in range(n)]


def write_lm_splits(root: Path, train: int, validation: int, test: int) -> Path:
    """train/validation/test.jsonl of :func:`lm_texts` (seeds 1, 2, 3) in ``root``; returns ``root``."""
    for name, n, seed in (("train", train, 1), ("validation", validation, 2), ("test", test, 3)):
        write_jsonl(root / f"{name}.jsonl", [{"text": t} for t in lm_texts(n, seed)])
    return root


def build_tiny_gpt2(path: Path) -> Path:
    """A 2-layer, 32-wide GPT-2 and a byte-level BPE tokenizer trained in-process, saved as safetensors."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(lm_texts(400, 0) + [" ".join(CORPUS_WORDS)], vocab_size=320, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=64)
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def lm_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lm_splits(tmp_path_factory.mktemp("lm-data"), 300, 40, 40)


def lm_config(model: Path, data: Path, out: Path, task: str, **sections: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "model": {"name_or_path": str(model)},
        "task": task,
        "data": {"train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl"),
                 "test": str(data / "test.jsonl"), "max_length": 32, "name": "tiny text"},
        "training": {"learning_rate": 5e-3, "num_epochs": 2, "train_batch_size": 8, "eval_batch_size": 8, "seed": 3},
        "evaluation": {"batch_size": 8},
        "benchmark": {"enabled": False},
        "card": {"model_name": f"tiny-{task}", "base_model": "test-org/tiny"},
        "output": {"dir": str(out)},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def loaded_model(path: Path, task: str, **sections: Any) -> tuple[Any, Any]:
    from cardgen.tasks import get_task

    cfg = load_config(data=lm_config(path, path, path / "unused", task, **sections))
    return get_task(task).load_model(cfg), cfg


# ---------------------------------------------------------------------------------------------------------------
# Causal LM


def brute_force_nll(model: Any, ids: np.ndarray, size: int, step: int) -> np.ndarray:
    """-log p(ids[t] | its context) for every t >= 1, one forward per token, in float64.

    The context of token t follows from the definition, not from cardgen's window list: the first window predicts
    tokens 1 .. size-1 from the start; after it, token t is predicted in the window that ends at the first
    ``size + k * step >= t + 1`` (capped at the end), which starts ``size`` tokens before its end.
    """
    import copy

    import torch

    double = copy.deepcopy(model).double().eval()
    out = np.zeros(len(ids))
    for t in range(1, len(ids)):
        if t < size:
            begin = 0
        else:
            k = math.ceil((t + 1 - size) / step)
            begin = min(size + k * step, len(ids)) - size
        with torch.no_grad():
            logits = double(torch.tensor([ids[begin:t].tolist()])).logits[0, -1]
        out[t] = -float(torch.log_softmax(logits, -1)[int(ids[t])])
    return out


@pytest.mark.parametrize(("size", "stride"), [(64, None), (16, 16), (16, 5), (24, 12)],
                         ids=["one-window", "no-overlap", "stride-5", "stride-half"])
def test_causal_perplexity_equals_brute_force(tiny_gpt2: Path, size: int, stride: int | None) -> None:
    import pandas as pd

    from cardgen.tasks import causal_lm

    loaded, cfg = loaded_model(tiny_gpt2, "causal-lm", lm={"block_size": size, "stride": stride},
                               evaluation={"batch_size": 3})
    texts = lm_texts(3 if size == 64 else 14, 9)
    stream = causal_lm.token_stream(texts, loaded.tokenizer)
    ids = np.concatenate([[loaded.tokenizer.bos_token_id], stream.ids])
    if size == 64:
        assert len(ids) <= 64  # the whole text fits one window: no windowing at all
    step = causal_lm.window_step(cfg, size)
    expected = brute_force_nll(loaded.model, ids, size, step)
    ev = causal_lm.evaluate(loaded, pd.DataFrame({"text": texts}), cfg, [], "model", "test")
    n = len(ids) - 1
    assert ev.extra["predicted_tokens"] == n  # every token of the text predicted exactly once
    assert ev.metrics["perplexity"] == pytest.approx(math.exp(expected.sum() / n), rel=1e-5)
    assert ev.metrics["bits_per_byte"] == pytest.approx(
        expected.sum() / math.log(2) / len("\n\n".join(texts).encode()), rel=1e-5)
    nll, predicted = causal_lm.stream_nll(loaded.model, ids, size, step, batch_size=4,
                                          pad_token_id=loaded.tokenizer.pad_token_id)
    assert predicted.sum() == n and not predicted[0]
    np.testing.assert_allclose(nll[1:], expected[1:], rtol=1e-4, atol=1e-5)


def test_windows_predict_every_position_once() -> None:
    from cardgen.tasks.causal_lm import windows

    for length in (1, 2, 5, 16, 17, 40, 101):
        for size in (2, 3, 8, 16):
            for step in range(1, size):
                count = np.zeros(length, dtype=int)
                for begin, end, n_targets in windows(length, size, step):
                    assert 0 <= begin < end <= length and end - begin <= size and 1 <= n_targets < end - begin + 1
                    assert n_targets <= end - begin - 1 or begin == 0  # a target always has context
                    count[end - n_targets:end] += 1
                assert count[0] == 0 and (length < 2 or (count[1:] == 1).all()), (length, size, step)


def test_causal_perplexity_is_token_weighted(tiny_gpt2: Path) -> None:
    import pandas as pd

    from cardgen.tasks import causal_lm

    loaded, cfg = loaded_model(tiny_gpt2, "causal-lm", lm={"block_size": 16, "stride": 8})
    texts = ["The cat sat on the mat and the dog ran in the park.", "Good.", "Paris is the capital of France."]
    ev = causal_lm.evaluate(loaded, pd.DataFrame({"text": texts}), cfg, [], "model", "test")
    nll, tokens = np.asarray(ev.losses), np.asarray(ev.extra["tokens"])
    assert tokens.sum() == ev.extra["predicted_tokens"]
    assert ev.metrics["perplexity"] == pytest.approx(math.exp(nll.sum() / tokens.sum()), rel=1e-5)
    mean_of_texts = float(np.mean(np.exp(nll / tokens)))
    assert abs(mean_of_texts - ev.metrics["perplexity"]) > 1e-3  # the naive average is a different number


@pytest.fixture(scope="module")
def causal_run(tiny_gpt2: Path, lm_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cardgen.pipeline import run

    out = tmp_path_factory.mktemp("causal") / "run"
    cfg = load_config(data=lm_config(tiny_gpt2, lm_data, out, "causal-lm", lm={
        "block_size": 32, "stride": 16, "prompts": ["The movie was", "Paris is"], "max_new_tokens": 8}))
    return run(cfg).output_dir


def test_causal_run_record_and_card(causal_run: Path) -> None:
    from huggingface_hub import ModelCard

    from cardgen.record import load_record

    record = load_record(causal_run)
    ev, base = record.evaluation, record.base_evaluation
    assert ev is not None and base is not None and record.training is not None
    assert ev.metrics["perplexity"] < base.metrics["perplexity"]  # fine-tuning on this text helps
    assert base.extra["meaningful"] is True and ev.extra["predicted_tokens"] == base.extra["predicted_tokens"]
    for row in record.training.epochs:
        assert row.metrics["perplexity"] > 1
    assert [g["prompt"] for g in ev.extra["generations"]] == ["The movie was", "Paris is"]
    card = ModelCard.load(causal_run / "README.md")
    assert card.data.pipeline_tag == "text-generation"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["perplexity"] == pytest.approx(round(ev.metrics["perplexity"], 4))
    assert results["bits_per_byte"] == pytest.approx(round(ev.metrics["bits_per_byte"], 4))
    text = (causal_run / "README.md").read_text()
    assert "| Training Loss | Epoch | Step | Validation Loss | Perplexity |" in text
    assert "## Base model vs fine-tuned" in text and "## Sample generations" in text
    assert "| Prompt | Base | Fine-tuned |" in text and "Sliding window of 32 tokens" in text
    assert (causal_run / "model.safetensors").is_file()
    # the base-vs-fine-tuned table carries paired intervals and p-values computed from the per-text NLLs
    comparison = record.comparison
    assert comparison is not None and comparison.task == "causal-lm" and comparison.num_examples == len(ev.losses)
    ppl = next(r for r in comparison.metrics if r.key == "perplexity")
    assert ppl.base[0] == pytest.approx(base.metrics["perplexity"])
    assert ppl.fine_tuned[0] == pytest.approx(ev.metrics["perplexity"])
    assert ppl.delta[0] < 0 and ppl.p_value is not None
    assert "| Metric | Base | Fine-tuned | Change | p-value |" in text and "paired permutation" in text
    from cardgen.card.format import format_interval

    assert f"| {format_interval(ppl.fine_tuned)} | {format_interval(ppl.delta, signed=True)} |" in text
    # every one of the 40 texts improves: no permutation of 10,000 reaches the change, so the card gives a bound
    # and run.json the exact floor
    assert comparison.permutations == 10_000 and ppl.p_value == pytest.approx(1 / 10_001)
    assert f"{format_interval(ppl.delta, signed=True)} | < 0.0001 (the smallest 10,000 permutations can give) |" in text
    assert "(10,000 permutations, two-sided)" in text


def test_causal_epoch_perplexity_is_the_final_method(causal_run: Path) -> None:
    """The per-epoch validation perplexity (Trainer) equals cardgen's evaluation of the saved model on validation."""
    import pandas as pd

    from cardgen.record import load_record
    from cardgen.tasks import causal_lm

    record = load_record(causal_run)
    assert record.training is not None
    cfg = load_config(causal_run / "config.yaml", [f"model.name_or_path={causal_run}"])
    loaded = causal_lm.load_model(cfg)
    frame = pd.read_json(cfg.data.validation, lines=True)
    ev = causal_lm.evaluate(loaded, frame, cfg, [], "check", "validation")
    best = next(r for r in record.training.epochs if r.step == record.training.best_step)
    assert best.metrics["perplexity"] == pytest.approx(ev.metrics["perplexity"], rel=1e-4)


def test_gguf_model_becomes_a_plain_trainable_model(tmp_path: Path) -> None:
    """A model carrying transformers' GGUF quantizer marker is rebuilt as a plain, savable model."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from cardgen.models import plain_model

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32)).eval()
    model.hf_quantizer = object()  # what from_pretrained(gguf_file=...) leaves behind
    plain = plain_model(model)
    assert getattr(plain, "hf_quantizer", None) is None and plain is not model
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, plain(ids).logits)
    assert plain.lm_head.weight is plain.transformer.wte.weight  # still tied
    plain.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------------------------
# Masked LM


def test_mlm_masks_identical_across_runs_and_models(tiny_bert: Path, tmp_path: Path) -> None:
    import pandas as pd
    import torch

    from cardgen.tasks import masked_lm

    loaded, cfg = loaded_model(tiny_bert, "masked-lm", lm={"mask_seed": 5})
    frame = pd.DataFrame({"text": lm_texts(30, 4)})
    first = masked_lm.eval_features(frame, loaded.tokenizer, cfg)
    again = masked_lm.eval_features(frame, loaded.tokenizer, cfg)
    assert first == again
    # Masks do not depend on the model: a differently initialised model sees the very same inputs.
    other_dir = tmp_path / "other"
    build_tiny_bert(other_dir)
    other, _ = loaded_model(other_dir, "masked-lm", lm={"mask_seed": 5})
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(0.01)
    ev_a = masked_lm.evaluate(loaded, frame, cfg, [], "a", "test")
    ev_b = masked_lm.evaluate(other, frame, cfg, [], "b", "test")
    assert ev_a.extra["mask_fingerprint"] == ev_b.extra["mask_fingerprint"] == masked_lm.mask_fingerprint(first)
    assert ev_a.extra["tokens"] == ev_b.extra["tokens"]
    assert ev_a.metrics["perplexity"] != ev_b.metrics["perplexity"]
    # Another seed gives other masks; every example has at least one masked token and no special token is masked.
    reseeded = load_config(data={**cfg.to_dict(), "lm": {**cfg.to_dict()["lm"], "mask_seed": 6}})
    assert masked_lm.eval_features(frame, loaded.tokenizer, reseeded) != first
    special = {loaded.tokenizer.cls_token_id, loaded.tokenizer.sep_token_id, loaded.tokenizer.pad_token_id}
    for feat in first:
        labels = np.asarray(feat["labels"])
        assert (labels != -100).sum() >= 1
        assert not set(labels[labels != -100].tolist()) & special


def test_mlm_masking_rate_and_whole_words() -> None:
    from cardgen.tasks.masked_lm import mask_tokens, word_starts

    rng = np.random.default_rng(0)
    n = 20000
    ids = np.arange(5, n + 5)
    special = np.zeros(n, dtype=bool)
    special[[0, -1]] = True
    masked, labels = mask_tokens(ids, special, None, rng, 0.15, 4, 1000)
    selected = labels != -100
    assert selected.mean() == pytest.approx(0.15, abs=0.01) and not selected[special].any()
    assert (masked[selected] == 4).mean() == pytest.approx(0.8, abs=0.03)
    assert (masked[~selected] == ids[~selected]).all()
    tokens = ["[CLS]", "un", "##believ", "##able", "movie", "!", "[SEP]"]
    spec = np.asarray([True, False, False, False, False, False, True])
    starts = word_starts(tokens, spec, "##")
    assert starts.tolist() == [False, True, False, False, True, True, False]
    for seed in range(30):
        _, labels = mask_tokens(np.arange(7), spec, starts, np.random.default_rng(seed), 0.3, 99, 50)
        chosen = labels != -100
        assert chosen[1:4].all() or not chosen[1:4].any()  # the three pieces of one word go together


def test_mlm_perplexity_equals_brute_force(tiny_bert: Path) -> None:
    import pandas as pd
    import torch
    import torch.nn.functional as F

    from cardgen.tasks import masked_lm

    loaded, cfg = loaded_model(tiny_bert, "masked-lm", evaluation={"batch_size": 4})
    frame = pd.DataFrame({"text": lm_texts(13, 8)})
    ev = masked_lm.evaluate(loaded, frame, cfg, [], "model", "test")
    total, count = 0.0, 0
    for feat in masked_lm.eval_features(frame, loaded.tokenizer, cfg):
        inputs = {k: torch.tensor([v]) for k, v in feat.items() if k != "labels"}
        with torch.no_grad():
            logits = loaded.model(**inputs).logits[0].double()
        labels = torch.tensor(feat["labels"])
        where = labels != -100
        total += float(F.cross_entropy(logits[where], labels[where], reduction="sum"))
        count += int(where.sum())
    assert ev.extra["masked_tokens"] == count
    assert ev.metrics["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)


@pytest.fixture(scope="module")
def mlm_run(lm_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT saved without an MLM head (like the packaged MiniLM), fine-tuned as a masked LM."""
    import torch
    from transformers import BertConfig, BertModel

    from cardgen.pipeline import run

    src = build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-mlm"))
    torch.manual_seed(0)
    encoder = BertModel(BertConfig.from_pretrained(src))
    for f in src.glob("model*.safetensors"):
        f.unlink()
    encoder.save_pretrained(src, safe_serialization=True)  # the encoder only: no cls.predictions.* weights
    out = tmp_path_factory.mktemp("mlm") / "run"
    cfg = load_config(data=lm_config(src, lm_data, out, "masked-lm", lm={"mask_seed": 1},
                                     training={"num_epochs": 3, "learning_rate": 1e-2}))
    return run(cfg).output_dir


def test_mlm_run_flags_new_head_and_keeps_masks(mlm_run: Path) -> None:
    from huggingface_hub import ModelCard

    from cardgen.record import load_record

    record = load_record(mlm_run)
    ev, base = record.evaluation, record.base_evaluation
    assert ev is not None and base is not None and record.training is not None
    assert any(k.startswith("cls.predictions") for k in record.model.newly_initialized)
    assert base.extra["meaningful"] is False and "no trained MLM head" in base.extra["note"]
    assert base.extra["mask_fingerprint"] == ev.extra["mask_fingerprint"]
    assert ev.metrics["perplexity"] < base.metrics["perplexity"]
    assert all("perplexity" in r.metrics for r in record.training.epochs)
    card = ModelCard.load(mlm_run / "README.md")
    assert card.data.pipeline_tag == "fill-mask"
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["perplexity"] == pytest.approx(
        round(ev.metrics["perplexity"], 4))
    text = (mlm_run / "README.md").read_text()
    assert "The base numbers are not meaningful" in text and "(not meaningful)" in text
    assert "Both saw the same masked inputs" in text
    assert record.comparison is None and "p-value" not in text  # no significance test against a random head


def test_mlm_epoch_perplexity_is_the_final_method(mlm_run: Path) -> None:
    import pandas as pd

    from cardgen.record import load_record
    from cardgen.tasks import masked_lm

    record = load_record(mlm_run)
    assert record.training is not None
    cfg = load_config(mlm_run / "config.yaml", [f"model.name_or_path={mlm_run}"])
    loaded = masked_lm.load_model(cfg)
    ev = masked_lm.evaluate(loaded, pd.read_json(cfg.data.validation, lines=True), cfg, [], "check", "validation")
    best = next(r for r in record.training.epochs if r.step == record.training.best_step)
    assert best.metrics["perplexity"] == pytest.approx(ev.metrics["perplexity"], rel=1e-4)


def test_lm_config_checks() -> None:
    from cardgen.errors import ConfigError

    with pytest.raises(ConfigError, match="lm.stride"):
        load_config(data={"model": "m", "task": "clm", "data": {"train": "x.jsonl"},
                          "lm": {"block_size": 16, "stride": 32}})
    with pytest.raises(ConfigError, match="lm.mlm_probability"):
        load_config(data={"model": "m", "task": "mlm", "data": {"train": "x.jsonl"}, "lm": {"mlm_probability": 1.5}})


def test_causal_block_longer_than_context_is_refused(tiny_gpt2: Path, lm_data: Path, tmp_path: Path) -> None:
    from cardgen.errors import ConfigError
    from cardgen.pipeline import run

    cfg = lm_config(tiny_gpt2, lm_data, tmp_path / "out", "causal-lm", lm={"block_size": 128})
    cfg["data"]["max_length"] = 128
    path = write_config(tmp_path / "c.yaml", cfg)
    with pytest.raises(ConfigError):
        run(load_config(path))
    assert not (tmp_path / "out").exists()


def test_causal_no_training_documents_the_checkpoint(tiny_gpt2: Path, lm_data: Path, tmp_path: Path) -> None:
    from cardgen.pipeline import run
    from cardgen.record import load_record

    cfg = lm_config(tiny_gpt2, lm_data, tmp_path / "doc", "causal-lm", training=None,
                    lm={"prompts": ["The cat"], "max_new_tokens": 3})
    out = run(load_config(data=cfg)).output_dir
    record = load_record(out)
    assert record.training is None and record.base_evaluation is None and record.evaluation is not None
    text = (out / "README.md").read_text()
    assert "| Prompt | Model |" in text and "## Base model vs fine-tuned" not in text
    assert "No training" in text and not (out / "model.safetensors").exists()


def test_cli_compare_causal_lm_reproduces_the_runs_comparison(causal_run: Path, tiny_gpt2: Path, lm_data: Path,
                                                              tmp_path: Path) -> None:
    """`cardgen compare --task causal-lm` evaluates both checkpoints with the run's windows and gets its numbers."""
    from click.testing import CliRunner

    from cardgen.cli import cli
    from cardgen.record import load_record

    out_json, out_md = tmp_path / "c.json", tmp_path / "c.md"
    result = CliRunner().invoke(cli, ["compare", str(tiny_gpt2), str(causal_run), "--task", "causal-lm",
                                      "--data", str(lm_data / "test.jsonl"), "--batch-size", "8", "-q",
                                      "--json", str(out_json), "--markdown", str(out_md)])
    assert result.exit_code == 0, result.output
    record = load_record(causal_run)
    assert record.comparison is not None
    ran = {r.key: r for r in record.comparison.metrics}
    got = {r["key"]: r for r in json.loads(out_json.read_text())["metrics"]}
    assert set(got) == {"perplexity", "loss", "bits_per_byte"}
    for key, row in ran.items():  # same windows (stride 16 from run.json), same documents, same resamples
        assert got[key]["base"] == pytest.approx(row.base, rel=1e-5)
        assert got[key]["fine_tuned"] == pytest.approx(row.fine_tuned, rel=1e-5)
        assert got[key]["p_value"] == pytest.approx(row.p_value)
    assert "Perplexi" in result.output and "Bits per" in result.output  # the table (wrapped to the width)
    md = out_md.read_text()
    assert "| Perplexity (lower is better) |" in md and "documents" in md
    assert "| < 0.0001 (the smallest 10,000 permutations can give) |" in md  # at its floor, as in the card
    assert "< 0.0001" in result.output  # and on the terminal


def test_cli_compare_refuses_a_base_with_a_random_head(mlm_run: Path, lm_data: Path) -> None:
    from click.testing import CliRunner

    from cardgen.cli import cli
    from cardgen.record import load_record

    base = load_record(mlm_run).config["model"]["name_or_path"]  # the encoder saved without an MLM head
    result = CliRunner().invoke(cli, ["compare", base, str(mlm_run), "--task", "masked-lm",
                                      "--data", str(lm_data / "test.jsonl")])
    assert result.exit_code == 2 and result.output.startswith("Error: ") and "no trained MLM head" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Masked-LM perplexity" not in result.output  # refused before evaluating anything
    assert "Traceback" not in result.output
