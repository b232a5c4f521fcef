"""The generation tasks end to end on tiny in-process models: seq2seq (a random T5; an encoder-decoder built from a
BERT-like encoder) and the causal-LM task on instruction data (a random Llama with a chat template). Runs, records,
cards, `cardgen compare --task seq2seq`, `cardgen bench`, and every generation number recomputed from run.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sacrebleu")
pytest.importorskip("rouge_score")

from click.testing import CliRunner  # noqa: E402
from generation_checks import check_generation_section  # noqa: E402
from generation_data import (  # noqa: E402
    build_tiny_chat_lm,
    build_tiny_encoder,
    build_tiny_t5,
    write_jsonl,
    write_translation_data,
)

from cardgen.cli import cli  # noqa: E402
from cardgen.config import load_config  # noqa: E402
from cardgen.pipeline import run  # noqa: E402


@pytest.fixture(scope="session")
def translation_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_translation_data(tmp_path_factory.mktemp("translation"))


@pytest.fixture(scope="session")
def t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


def seq2seq_config(model: Path, data: Path, out: Path, **sections: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "model": str(model), "task": "translation",
        "data": {"train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl"),
                 "test": str(data / "test.jsonl"), "name": "toy en-de"},
        "seq2seq": {"kind": "translation", "source_lang": "en", "target_lang": "de", "max_target_length": 16},
        "generation": {"max_new_tokens": 10, "examples": 3},
        "training": {"learning_rate": 1e-2, "num_epochs": 2, "train_batch_size": 16, "eval_batch_size": 16, "seed": 3},
        "compare": {"bootstrap_samples": 200}, "benchmark": {"enabled": False},
        "card": {"model_name": "tiny-t5-en-de", "base_model": "test-org/tiny-t5", "language": ["en", "de"]},
        "output": {"dir": str(out)},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    return cfg


@pytest.fixture(scope="session")
def t5_run(t5: Path, translation_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("t5-run") / "out"
    return run(load_config(data=seq2seq_config(t5, translation_data, out))).output_dir


def test_seq2seq_run_records_every_output_and_epoch(t5_run: Path) -> None:
    record = json.loads((t5_run / "run.json").read_text())
    assert record["model"]["pipeline_tag"] == "translation"
    ev, base = record["evaluation"], record["base_evaluation"]
    assert {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match"} <= set(ev["metrics"])
    g = ev["extra"]["generation"]
    assert len(g["outputs"]) == len(g["references"]) == ev["num_examples"] == 24
    assert g["generation_config"]["max_new_tokens"] == 10 and g["generation_config"]["do_sample"] is False
    assert g["generation_config"]["num_beams"] == 1 and "eos_token_id" in g["generation_config"]
    assert g["signatures"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.")
    assert base["extra"]["meaningful"] is True
    epochs = record["training"]["epochs"]
    assert len(epochs) == 2 and all({"bleu", "chrf", "rougeL"} <= set(e["metrics"]) for e in epochs)
    assert record["training"]["metric_for_best_model"] == "chrf"
    assert record["training"]["arguments"]["predict_with_generate"] is True
    keys = [m["key"] for m in record["comparison"]["metrics"]]
    assert keys == ["bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match"]
    assert all(m["p_value"] is not None for m in record["comparison"]["metrics"])


def test_seq2seq_card_metadata(t5_run: Path) -> None:
    from huggingface_hub import ModelCard

    card = ModelCard.load(t5_run / "README.md")
    assert card.data.pipeline_tag == "translation"
    results = {r.metric_type: r for r in card.data.eval_results if r.dataset_split == "test"}
    assert {"bleu", "chrf", "rouge", "exact_match"} <= set(results)
    assert results["bleu"].metric_args["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert results["bleu"].task_type == "translation"
    assert [w["text"] for w in card.data.widget] == json.loads((t5_run / "run.json").read_text())[
        "evaluation"]["extra"]["generation"]["prompts"][:3]
    text = (t5_run / "README.md").read_text()
    assert "## Generation" in text and "## Base model vs fine-tuned" in text
    assert "- generation_max_new_tokens: 10" in text and "- generation_num_beams: 1" in text
    assert "| BLEU | chrF | ROUGE-1 |" in text  # per-epoch table columns
    assert "null" not in text.split("---")[1]
    lint = CliRunner().invoke(cli, ["lint", str(t5_run / "README.md")])
    assert lint.exit_code == 0 and "0 problems" in lint.output, lint.output


def test_every_generation_number_recomputes_from_run_json(t5_run: Path) -> None:
    rows = check_generation_section(t5_run)
    assert set(rows) >= {"bleu", "chrf", "rougeL", "exact_match"}


def test_card_rerenders_identically(t5_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(t5_run, copy)
    result = CliRunner().invoke(cli, ["card", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "README.md").read_text() == (t5_run / "README.md").read_text()


def test_compare_seq2seq_checkpoints_reproduces_the_run(t5_run: Path, t5: Path, translation_data: Path,
                                                        tmp_path: Path) -> None:
    out_json, out_md = tmp_path / "cmp.json", tmp_path / "cmp.md"
    result = CliRunner().invoke(cli, ["compare", str(t5), str(t5_run), "--task", "seq2seq", "--data",
                                      str(translation_data / "test.jsonl"), "--bootstrap", "200", "--json",
                                      str(out_json), "--markdown", str(out_md), "-q"])
    assert result.exit_code == 0, result.output
    compared = json.loads(out_json.read_text())
    recorded = json.loads((t5_run / "run.json").read_text())["comparison"]
    assert [m["key"] for m in compared["metrics"]] == [m["key"] for m in recorded["metrics"]]
    for mine, theirs in zip(compared["metrics"], recorded["metrics"], strict=True):
        assert mine["fine_tuned"] == pytest.approx(theirs["fine_tuned"]) and mine["base"] == pytest.approx(
            theirs["base"])
    assert compared["generation"]["signatures"]["bleu"] == recorded["generation"]["signatures"]["bleu"]
    markdown = out_md.read_text()
    assert "| BLEU |" in markdown and "Sentence chrF went up for" in markdown


def test_bench_measures_seq2seq_generation(t5: Path) -> None:
    from cardgen.bench.checkpoints import bench_checkpoints

    record = bench_checkpoints(str(t5), str(t5), batch_sizes="1", sequence_length=12, min_iterations=2,
                               min_seconds=0.05, rounds=1, new_tokens=4)
    for model in record.models.values():
        assert model.batches[0].latency.mean_s > 0
        gen = model.generation[0]
        assert gen.new_tokens == 4 and gen.prompt_length == 12  # the source's tokens, not the decoder's start
        assert gen.time_to_first_token.mean_s > 0 and gen.generate.mean_s > 0


def test_encoder_decoder_built_from_an_encoder(translation_data: Path, tmp_path: Path) -> None:
    """An encoder-only checkpoint becomes an EncoderDecoderModel: its base is flagged as not meaningful (random
    cross-attention), and the saved model regenerates the recorded outputs."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    encoder = build_tiny_encoder(tmp_path / "encoder")
    cfg = seq2seq_config(encoder, translation_data, tmp_path / "out", seq2seq={"encoder_decoder": True, "max_source_length": 32},
                         training={"num_epochs": 1})
    record = run(load_config(data=cfg)).record
    assert record.model.architecture == "EncoderDecoderModel"
    assert any("crossattention" in k for k in record.model.newly_initialized)
    assert record.base_evaluation is not None and record.base_evaluation.extra["meaningful"] is False
    assert record.comparison is None
    card = (tmp_path / "out" / "README.md").read_text()
    assert "The base numbers are not meaningful" in card and "cross-attention" in card
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "out").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert record.evaluation is not None
    g = record.evaluation.extra["generation"]
    with torch.inference_mode():
        ids = model.generate(**tok(g["sources"][:2], return_tensors="pt", padding=True), max_new_tokens=10,
                             do_sample=False)
    assert [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)] == g["outputs"][:2]


def test_instruction_tuning_of_a_causal_lm(translation_data: Path, tmp_path: Path) -> None:
    """Prompt/completion data in the chat template: loss on the completion only; perplexity of the references and
    generation metrics for base and fine-tuned, with paired tests; the widget gives chat messages."""
    from cardgen.tasks.instruction import features, load_split_frames

    lm = build_tiny_chat_lm(tmp_path / "lm")
    cfg = {"model": str(lm), "task": "causal-lm",
           "data": {"train": str(translation_data / "train.jsonl"), "validation": str(translation_data /
                    "validation.jsonl"), "test": str(translation_data / "test.jsonl"), "max_length": 40},
           "instruction": {"prompt_column": "source", "completion_column": "target",
                           "template": "translate to german: {prompt}", "chat_template": True},
           "generation": {"max_new_tokens": 8}, "compare": {"bootstrap_samples": 200},
           "training": {"learning_rate": 1e-2, "num_epochs": 1, "train_batch_size": 16}, "benchmark": {"enabled": False},
           "card": {"model_name": "tiny-lm-en-de", "base_model": "test-org/tiny-lm"}, "output": {"dir": str(tmp_path / "out")}}
    config = load_config(data=cfg)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lm)
    frame = load_split_frames(config, tok, True)[0]["test"]
    first = features(frame, tok, config)[0]
    prompt = tok(frame["prompt"][0], add_special_tokens=False)["input_ids"]
    assert first["labels"][:len(prompt)] == [-100] * len(prompt)  # no loss on the prompt
    assert first["labels"][len(prompt):] == first["input_ids"][len(prompt):]
    assert first["input_ids"][-1] == tok.eos_token_id
    assert frame["prompt"][0].startswith("<|im_start|> user translate to german:")
    record = run(config).record
    assert record.evaluation is not None and record.comparison is not None
    assert {"perplexity", "bits_per_byte", "bleu", "chrf", "rougeL"} <= set(record.evaluation.metrics)
    keys = [m.key for m in record.comparison.metrics]
    assert keys[:3] == ["perplexity", "loss", "bits_per_byte"] and "chrf" in keys
    assert record.training is not None and "perplexity" in record.training.epochs[0].metrics
    check_generation_section(tmp_path / "out")
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.pipeline_tag == "text-generation"
    assert card.data.widget[0]["messages"][0]["content"].startswith("translate to german: ")
    assert {"perplexity", "bleu", "chrf"} <= {r.metric_type for r in card.data.eval_results}
    # `cardgen compare` of the two checkpoints evaluates them as the run did (FT's recorded instruction settings)
    out_json = tmp_path / "cmp.json"
    result = CliRunner().invoke(cli, ["compare", str(lm), str(tmp_path / "out"), "--task", "causal-lm", "--data",
                                      str(translation_data / "test.jsonl"), "--bootstrap", "200", "--json",
                                      str(out_json), "-q"])
    assert result.exit_code == 0, result.output
    compared = {m["key"]: m["fine_tuned"] for m in json.loads(out_json.read_text())["metrics"]}
    assert compared == {m.key: pytest.approx(m.fine_tuned) for m in record.comparison.metrics}


def test_messages_column_uses_the_chat_template(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from cardgen.tasks.instruction import load_split_frames

    lm = build_tiny_chat_lm(tmp_path / "lm")
    rows = [{"messages": [{"role": "user", "content": f"translate to german: the {w}"},
                          {"role": "assistant", "content": f"die {w}"}]} for w in ("house", "file", "page") * 4]
    write_jsonl(tmp_path / "chat.jsonl", rows)
    cfg = load_config(data={"model": str(lm), "task": "causal-lm", "data": {"train": str(tmp_path / "chat.jsonl")},
                            "instruction": {"messages_column": "messages", "chat_template": True}})
    frames = load_split_frames(cfg, AutoTokenizer.from_pretrained(lm), True)[0]
    frame = frames["train"]
    assert frame["completion"][0].startswith("die ")
    assert frame["prompt"][0].endswith("<|im_start|> assistant ") and frame["source"][0].startswith("translate")


def test_a_local_evaluate_metric_is_recorded_and_shown(t5: Path, translation_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("evaluate")
    script = tmp_path / "length_ratio" / "length_ratio.py"
    script.parent.mkdir()
    script.write_text('''"""Characters of the predictions over characters of the references."""
import datasets
import evaluate


class LengthRatio(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="length ratio", citation="", features=datasets.Features(
            {"predictions": datasets.Value("string"), "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        return {"ratio": sum(map(len, predictions)) / sum(map(len, references)), "name": "length"}
''')
    cfg = seq2seq_config(t5, translation_data, tmp_path / "out", training=None,
                         generation={"metrics": ["bleu", "chrf", f"evaluate:{script.parent}"]})
    record = run(load_config(data=cfg)).record
    assert record.evaluation is not None
    extra = record.evaluation.extra["evaluate"]["length_ratio"]
    outputs = record.evaluation.extra["generation"]["outputs"]
    refs = record.evaluation.extra["generation"]["references"]
    assert extra == {"ratio": pytest.approx(sum(map(len, outputs)) / sum(map(len, refs)))}
    assert "rouge1" not in record.evaluation.metrics  # only the metrics the config names
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| length\\_ratio ratio |" in card and "### Sample outputs" in card


def test_a_seq2seq_run_benchmarks_forward_passes_and_generation(t5: Path, translation_data: Path,
                                                                tmp_path: Path) -> None:
    cfg = seq2seq_config(t5, translation_data, tmp_path / "out", training={"num_epochs": 1},
                         benchmark={"enabled": True, "batch_sizes": [1], "sequence_length": 12, "min_iterations": 2,
                                    "min_seconds": 0.05})
    record = run(load_config(data=cfg)).record
    assert record.benchmark is not None
    for model in record.benchmark.models.values():  # base and fine-tuned, interleaved
        assert model.batches[0].latency.mean_s > 0  # encoder and decoder forward (teacher-forced)
        assert model.generation[0].time_to_first_token.mean_s > 0 and model.generation[0].new_tokens == 16
    assert "Decode tokens/s" in (tmp_path / "out" / "README.md").read_text()
