"""LoRA on every task without task code of its own: causal LM, masked LM, QA end to end on tiny models, and the
generic parts a seq2seq task relies on (peft task type and default target modules of encoder-decoders)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import build_tiny_bert, write_jsonl
from test_tasks_lm import build_tiny_gpt2, lm_config, write_lm_splits
from test_tasks_qa import qa_config, qa_rows

from cardgen.config import load_config

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def text_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lm_splits(tmp_path_factory.mktemp("lora-lm-data"), 160, 24, 24)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("lora-gpt2"))


@pytest.fixture(scope="module")
def causal_lora(gpt2: Path, text_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cardgen.pipeline import run

    out = tmp_path_factory.mktemp("lora-clm") / "run"
    cfg = load_config(data=lm_config(gpt2, text_data, out, "causal-lm", peft={"r": 4}, lm={"prompts": ["The movie"],
                                     "max_new_tokens": 4}, training={"learning_rate": 2e-2, "num_epochs": 2}))
    return run(cfg).output_dir


def test_causal_lm_base_is_the_model_with_its_adapter_disabled(causal_lora: Path, gpt2: Path, text_data: Path,
                                                               tmp_path: Path) -> None:
    from cardgen.pipeline import run
    from cardgen.record import load_record

    rec = load_record(causal_lora)
    assert rec.adapter.task_type == "CAUSAL_LM" and rec.adapter.target_modules == ["c_attn"]  # peft's GPT-2 default
    base = rec.base_evaluation
    assert base is not None and "disabled" in base.extra["base_via"] and base.extra["meaningful"] is True
    assert "evaluate_base" not in rec.stage_seconds  # no evaluation before training: the adapter is switched off
    # the same numbers as the base checkpoint evaluated on its own, without any adapter
    alone = run(load_config(data=lm_config(gpt2, text_data, tmp_path / "base", "causal-lm", training=None,
                                           lm={"prompts": ["The movie"], "max_new_tokens": 4}))).record.evaluation
    assert base.extra["total_nll"] == pytest.approx(alone.extra["total_nll"], rel=1e-6)
    assert base.extra["generations"] == alone.extra["generations"]
    assert rec.comparison is not None and {r.key for r in rec.comparison.metrics} >= {"perplexity"}
    assert rec.evaluation.metrics["perplexity"] < base.metrics["perplexity"]
    text = (causal_lora / "README.md").read_text()
    assert "the base as the same in-memory model with its adapter disabled" in text
    assert "AutoPeftModelForCausalLM" in text


def test_causal_lm_adapter_reloads_with_peft(causal_lora: Path) -> None:
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    from cardgen.models import LoadedModel
    from cardgen.record import load_record
    from cardgen.tasks import causal_lm

    rec = load_record(causal_lora)
    cfg = load_config(causal_lora / "config.yaml")
    tokenizer = AutoTokenizer.from_pretrained(causal_lora)
    model = AutoPeftModelForCausalLM.from_pretrained(causal_lora).eval()
    frame = causal_lm.prepare_data(cfg, tokenizer, False).frames["test"]
    loaded = LoadedModel(model=model, tokenizer=tokenizer, newly_initialized=[], load_seconds=0.0, source="")
    again = causal_lm.evaluate(loaded, frame, cfg, [], "reloaded", "test")
    assert again.metrics["perplexity"] == pytest.approx(rec.evaluation.metrics["perplexity"], rel=1e-6)


def test_masked_lm_trains_its_fresh_head_in_full(text_data: Path, tmp_path: Path) -> None:
    """MiniLM-like: an encoder without an MLM head. The head is new, so the adapter trains and saves it in full and
    a --no-train run on the saved adapter gives the recorded perplexity."""
    import torch
    from transformers import BertConfig, BertModel

    from cardgen.pipeline import run

    src = build_tiny_bert(tmp_path / "encoder")
    torch.manual_seed(0)
    encoder = BertModel(BertConfig.from_pretrained(src))
    for f in src.glob("model*.safetensors"):
        f.unlink()
    encoder.save_pretrained(src, safe_serialization=True)
    cfg = lm_config(src, text_data, tmp_path / "mlm", "masked-lm", peft={"r": 4}, lm={"mask_seed": 1},
                    training={"num_epochs": 1, "learning_rate": 1e-2})
    rec = run(load_config(data=cfg)).record
    assert rec.adapter.task_type is None and "cls.predictions" in rec.adapter.modules_to_save
    assert rec.base_evaluation.extra["meaningful"] is False  # the base's head is the random original
    assert "disabled" in rec.base_evaluation.extra["base_via"]
    again = run(load_config(data=lm_config(tmp_path / "mlm", text_data, tmp_path / "again", "masked-lm",
                                           training=None, lm={"mask_seed": 1}))).record
    assert again.adapter.source == "loaded"
    assert again.evaluation.metrics["perplexity"] == pytest.approx(rec.evaluation.metrics["perplexity"], rel=1e-5)


def test_question_answering_with_lora(tiny_bert: Path, tmp_path: Path) -> None:
    from cardgen.pipeline import run

    data = tmp_path / "data"
    for name, n, seed in (("train", 80, 1), ("validation", 16, 2), ("test", 16, 3)):
        write_jsonl(data / f"{name}.jsonl", qa_rows(n, seed))
    cfg = qa_config(tiny_bert, data, tmp_path / "qa", peft={"r": 4}, training={"num_epochs": 1})
    rec = run(load_config(data=cfg)).record
    assert rec.adapter.task_type == "QUESTION_ANS" and "qa_outputs" in rec.adapter.modules_to_save
    assert rec.base_evaluation.extra["meaningful"] is False and "disabled" in rec.base_evaluation.extra["base_via"]
    assert json.loads((tmp_path / "qa" / "adapter_config.json").read_text())["task_type"] == "QUESTION_ANS"


# ---------------------------------------------------------------------------------------------------------------
# What a seq2seq task gets without code of its own


def _tiny_t5() -> Any:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    return T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=16, d_ff=32, d_kv=8, num_layers=1,
                                               num_heads=2, decoder_start_token_id=0, pad_token_id=0))


def test_seq2seq_models_get_their_task_type_and_targets(tiny_bert: Path, make_config: Any, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel, get_peft_model
    from transformers import EncoderDecoderModel

    from cardgen.adapters import default_target_modules, lora_config, seq2seq_wrapper_works, task_type

    cfg = load_config(make_config(peft={"r": 2, "dropout": 0.0}))
    t5 = _tiny_t5()
    # peft's seq2seq wrapper needs a transformers hook that transformers 5 dropped: then a plain PeftModel
    assert task_type(t5) == ("SEQ_2_SEQ_LM" if seq2seq_wrapper_works(t5) else None)
    assert default_target_modules(t5) is None  # peft knows t5: q, v
    pair = EncoderDecoderModel.from_encoder_decoder_pretrained(str(tiny_bert), str(tiny_bert))
    assert task_type(pair) == task_type(t5)
    assert default_target_modules(pair) == ["query", "value"]  # from its two BERT halves (peft has none for it)
    model = get_peft_model(t5, lora_config(cfg, t5, []))
    ids = torch.tensor([[5, 6, 7, 1]])
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param)  # a trained-looking adapter
    model.eval()
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
        with model.disable_adapter():
            base_loss = model(input_ids=ids, labels=ids).loss
    assert float(loss) != pytest.approx(float(base_loss))
    model.save_pretrained(tmp_path / "t5-adapter")
    reloaded = PeftModel.from_pretrained(_tiny_t5(), tmp_path / "t5-adapter").eval()
    with torch.no_grad():
        assert float(reloaded(input_ids=ids, labels=ids).loss) == pytest.approx(float(loss), rel=1e-6)
        generated = reloaded.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
        with reloaded.disable_adapter():
            base_generated = reloaded.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
    assert generated.shape[-1] >= 2 and base_generated.shape == generated.shape
