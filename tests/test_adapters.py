"""LoRA adapters (peft) on the tiny BERT: training, what is saved, reloading with peft, the base as the same model
with the adapter disabled, an adapter directory wherever a checkpoint goes, the card, and the clear refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import base_config, write_config

from cardgen.cli import cli
from cardgen.config import load_config
from cardgen.errors import ConfigError

pytest.importorskip("peft")

LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["all-linear"]}
TRAINING = {"learning_rate": 1e-2, "num_epochs": 3, "train_batch_size": 16, "eval_batch_size": 32, "seed": 7}
BENCH = {"enabled": True, "batch_sizes": [2], "sequence_length": 16, "warmup": 1, "min_iterations": 2,
         "min_seconds": 0.05}


@pytest.fixture(scope="module")
def lora_run(tiny_bert: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA classifier on the tiny BERT: compared with its base, benchmarked, saved with merged weights."""
    from cardgen.pipeline import run

    out = tmp_path_factory.mktemp("lora") / "run"
    cfg = load_config(data=base_config(tiny_bert, tiny_data, out, peft={**LORA, "merge": True}, training=TRAINING,
                                       compare={"enabled": True}, benchmark=BENCH))
    return run(cfg).output_dir


def _record(out: Path) -> Any:
    from cardgen.record import load_record

    return load_record(out)


def _evaluate(model: Any, tokenizer: Any, out: Path) -> Any:
    """The test split evaluated by cardgen's classification code with ``model``, as the run evaluated it."""
    from cardgen.models import LoadedModel
    from cardgen.tasks import classification

    cfg = load_config(out / "config.yaml")
    data = classification.prepare_data(cfg, tokenizer, False)
    loaded = LoadedModel(model=model.eval(), tokenizer=tokenizer, newly_initialized=[], load_seconds=0.0, source="")
    return classification.evaluate(loaded, data.frames["test"], cfg, data.label_names, "reloaded", "test")


# ---------------------------------------------------------------------------------------------------------------
# Config


def test_peft_section_defaults_and_checks(make_config: Any) -> None:
    cfg = load_config(make_config(peft={}))
    assert cfg.peft is not None and cfg.peft.method == "lora" and cfg.peft.target_modules is None
    assert load_config(make_config()).peft is None  # no section: every weight is fine-tuned
    for bad, key in (({"r": 0}, "peft.r"), ({"dropout": 1.0}, "peft.dropout"), ({"method": "ia3"}, "peft.method"),
                     ({"target_modules": ["all-linear", "query"]}, "peft.target_modules"),
                     ({"rank": 8}, "peft.rank")):
        with pytest.raises(ConfigError) as err:
            load_config(make_config(peft=bad))
        assert key in err.value.message


def test_fresh_modules_cover_every_new_weight() -> None:
    from cardgen.adapter_files import covered_by_saved_modules
    from cardgen.adapters import fresh_modules, saved_modules

    new = ["cls.predictions.bias", "cls.predictions.decoder.bias", "cls.predictions.transform.dense.weight",
           "bert.pooler.dense.weight", "classifier.bias"]
    modules = fresh_modules(new)
    assert modules == ["bert.pooler.dense", "classifier", "cls.predictions"]
    assert all(covered_by_saved_modules(k, modules) for k in new)
    assert not covered_by_saved_modules("bert.encoder.layer.0.attention.self.query.weight", modules)
    # modules named in the config come first; fresh ones they already cover are not wrapped twice
    assert saved_modules(["cls"], new) == ["cls", "bert.pooler.dense", "classifier"]
    assert saved_modules(None, []) == []


# ---------------------------------------------------------------------------------------------------------------
# Training and saving


def test_saves_the_adapter_and_the_merged_weights(lora_run: Path) -> None:
    from safetensors import safe_open

    names = {p.name for p in lora_run.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "merged"} <= names
    assert "model.safetensors" not in names and "config.json" not in names  # the adapter alone at the top
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in (lora_run / "merged").iterdir()}
    assert "cardgen:begin" in (lora_run / "README.md").read_text()  # cardgen's card, not peft's stub
    config = json.loads((lora_run / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and config["r"] == 8
    rec = _record(lora_run)
    assert config["base_model_name_or_path"] == rec.adapter.base_model
    assert Path(rec.adapter.base_model).is_dir()  # the base as loaded: AutoPeftModel finds it
    # the pooler the tiny BERT lacks and the classifier are new: trained and saved in full, or they'd stay random
    assert {"classifier", "bert.pooler.dense"} <= set(rec.adapter.modules_to_save)
    with safe_open(str(lora_run / "adapter_model.safetensors"), framework="np") as f:
        saved = sum(int(__import__("numpy").prod(f.get_slice(k).get_shape())) for k in f.keys())  # noqa: SIM118
    assert rec.adapter.trainable_parameters == saved == rec.resources.trainable_parameters
    assert rec.adapter.trainable_parameters < rec.adapter.total_parameters
    files = ("adapter_model.safetensors", "adapter_config.json")
    assert rec.adapter.adapter_size_bytes == sum((lora_run / n).stat().st_size for n in files)
    assert rec.adapter.full_size_bytes == (lora_run / "merged" / "model.safetensors").stat().st_size
    assert rec.adapter.adapter_size_bytes < rec.adapter.full_size_bytes
    assert rec.adapter.merged_dir == "merged"


def test_peft_reloads_the_adapter_with_the_recorded_metrics(lora_run: Path) -> None:
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rec = _record(lora_run)
    tokenizer = AutoTokenizer.from_pretrained(lora_run)
    model = AutoPeftModelForSequenceClassification.from_pretrained(lora_run, num_labels=2)
    again = _evaluate(model, tokenizer, lora_run)
    assert again.predictions == rec.evaluation.predictions
    assert again.losses == pytest.approx(rec.evaluation.losses, abs=1e-5)
    for key, value in rec.evaluation.metrics.items():
        assert again.metrics[key] == pytest.approx(value, abs=1e-6), key
    merged = AutoModelForSequenceClassification.from_pretrained(lora_run / "merged")  # transformers alone
    assert _evaluate(merged, tokenizer, lora_run).predictions == rec.evaluation.predictions


def test_the_base_is_the_same_model_with_the_adapter_disabled(lora_run: Path) -> None:
    """The probe on the in-memory model with the adapter disabled equals the probe on a freshly loaded base."""
    from cardgen.compare.baseline import linear_probe
    from cardgen.models import load_tokenizer, resolve_source
    from cardgen.tasks import classification

    rec = _record(lora_run)
    base = rec.base_evaluation
    assert base is not None and base.method == "linear-probe" and "disabled" in base.extra["base_via"]
    assert rec.adapter.base_evaluation == base.extra["base_via"]
    cfg = load_config(lora_run / "config.yaml")
    tokenizer = load_tokenizer(cfg.model, *resolve_source(cfg.model))
    data = classification.prepare_data(cfg, tokenizer, True)
    fresh, _ = linear_probe(cfg.model, cfg, tokenizer, data.frames["train"], data.frames["test"], data.label_names,
                            split="test", max_train=cfg.compare.probe_max_train, seed=cfg.compare.seed,
                            batch_size=cfg.evaluation.batch_size)
    assert fresh.predictions == base.predictions
    assert fresh.losses == pytest.approx(base.losses, abs=1e-5)
    assert rec.comparison is not None and rec.comparison.method == "linear-probe"
    memory = rec.resources.stage_memory
    assert {"evaluate", "compare"} <= set(memory) and memory["compare"].rss_peak_bytes > 0


def test_benchmark_measures_the_adapter_unmerged_and_merged(lora_run: Path) -> None:
    bench = _record(lora_run).benchmark
    assert set(bench.models) == {"base", "fine-tuned", "fine-tuned (merged)"}
    adapter, merged = bench.models["fine-tuned"], bench.models["fine-tuned (merged)"]
    assert adapter.size_on_disk_bytes is not None and merged.size_on_disk_bytes is not None
    assert adapter.size_on_disk_bytes < merged.size_on_disk_bytes
    assert adapter.batches and merged.batches and merged.load_s is not None


def test_card_declares_the_adapter(lora_run: Path) -> None:
    from huggingface_hub import ModelCard

    card = ModelCard.load(lora_run / "README.md")
    assert card.data.library_name == "peft"
    assert card.data.base_model == "test-org/tiny-bert"  # the Hub id, never the local path it was loaded from
    assert {"lora", "peft", "base_model:adapter:test-org/tiny-bert"} <= set(card.data.tags)
    text = (lora_run / "README.md").read_text()
    assert "## Adapter" in text and "AutoPeftModelForSequenceClassification" in text
    assert "Trainable parameters" in text and "for the full model" in text
    assert "disable_adapter()" in text and "while comparing with the base" in text
    assert "Unmerged adapter / merged weights mean latency" in text
    assert "### Memory and precision" in text and "| Gradient checkpointing | off |" in text


# ---------------------------------------------------------------------------------------------------------------
# An adapter directory wherever a checkpoint goes


def test_no_train_on_the_adapter_directory(lora_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    from cardgen.pipeline import run

    trained = _record(lora_run)
    cfg = load_config(data=base_config(lora_run, tiny_data, tmp_path / "doc", training=None,
                                       compare={"enabled": True}))
    rec = run(cfg).record
    assert rec.adapter is not None and rec.adapter.source == "loaded" and rec.adapter.loaded_from == str(lora_run)
    assert rec.model.newly_initialized == []  # the adapter brought the head and the pooler
    assert rec.evaluation.predictions == trained.evaluation.predictions
    assert rec.evaluation.metrics["loss"] == pytest.approx(trained.evaluation.metrics["loss"], abs=1e-6)
    # no training, yet a comparison: the base is the loaded model with its adapter disabled
    assert rec.base_evaluation.predictions == trained.base_evaluation.predictions
    assert rec.comparison is not None
    text = (tmp_path / "doc" / "README.md").read_text()
    assert "This card documents a LoRA adapter" in text and "loaded from" in text


def test_compare_and_bench_take_an_adapter_directory(lora_run: Path, tiny_bert: Path, tiny_data: Path) -> None:
    from cardgen.bench.checkpoints import bench_checkpoints
    from cardgen.compare.checkpoints import compare

    trained = _record(lora_run)
    comparison = compare(str(tiny_bert), str(lora_run), str(tiny_data / "test.jsonl"),
                         train=str(tiny_data / "train.jsonl"), label_names=["negative", "positive"])
    assert comparison.fine_tuned_evaluation.predictions == trained.evaluation.predictions
    bench = bench_checkpoints(str(lora_run), vs=str(tiny_bert), batch_sizes=[2], sequence_length=16, warmup=1,
                              min_iterations=2, min_seconds=0.05, rounds=1)
    assert set(bench.models) == {"base", "model"}
    assert bench.models["model"].size_on_disk_bytes < bench.models["base"].size_on_disk_bytes


# ---------------------------------------------------------------------------------------------------------------
# Refusals: one line, exit 2


def _fails(args: list[str], *needles: str) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "(hint: " in errors[0], result.stderr
    line = errors[0]
    for needle in needles:
        assert needle in line, line
    return line


def test_qlora_without_cuda_is_refused_in_one_line(make_config: Any, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    config = make_config(peft={}, model={"quantization": "4bit"})
    _fails(["run", str(config)], "model.quantization", "CUDA")
    assert not (tmp_path / "out").exists()  # nothing written


def test_training_on_an_adapter_and_merge_without_one_are_refused(lora_run: Path, make_config: Any,
                                                                  tmp_path: Path) -> None:
    _fails(["run", str(make_config(model={"name_or_path": str(lora_run)}))], "is a LoRA adapter", "--no-train")
    _fails(["run", str(make_config()), "--merge"], "--merge", "peft")
    _fails(["run", str(make_config(training={"mixed_precision": "fp16"}))], "fp16", "CUDA")


def test_an_adapter_whose_base_is_missing_names_it(lora_run: Path, tmp_path: Path, tiny_data: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # a Hub base out of reach: one clear line, no retries

    for base, needle in (("/nonexistent/base-model", "the local path"), ("test-org/not-here", "hf download")):
        adapter = tmp_path / base.replace("/", "_")
        shutil.copytree(lora_run, adapter, ignore=shutil.ignore_patterns("merged", "run.json", "README.md"))
        config = json.loads((adapter / "adapter_config.json").read_text())
        (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": base}))
        cfg = write_config(tmp_path / "c.yaml", base_config(adapter, tiny_data, tmp_path / "o", training=None))
        _fails(["run", str(cfg)], f"cannot load the base model of the adapter {adapter}", base, needle)


# ---------------------------------------------------------------------------------------------------------------
# Memory options


def test_bf16_and_gradient_checkpointing_on_cpu(make_config: Any, tmp_path: Path) -> None:
    from cardgen.environment import cpu_has_native_bf16
    from cardgen.pipeline import run

    if not cpu_has_native_bf16():
        _fails(["run", str(make_config(training={"mixed_precision": "bf16"}))], "no native bf16")
        return
    training = {**TRAINING, "num_epochs": 1, "mixed_precision": "bf16", "gradient_checkpointing": True}
    rec = run(load_config(make_config(peft=LORA, training=training))).record
    assert rec.resources.mixed_precision == "bf16" and rec.resources.gradient_checkpointing
    assert rec.training.arguments["bf16"] is True
    text = (tmp_path / "out" / "README.md").read_text()
    assert "| Mixed precision (training) | bf16 autocast |" in text
    assert "| Gradient checkpointing | on" in text


def test_seeds_train_a_new_adapter_each_and_keep_the_best(tiny_bert: Path, tiny_data: Path, tmp_path: Path) -> None:
    """`--seeds 2` with a peft: section: every seed trains its own LoRA adapter on the frozen base, and the kept
    seed's saved adapter, reloaded with peft, gives the test metrics the seeds table recorded for it."""
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoTokenizer

    from cardgen.pipeline import run

    cfg = load_config(data=base_config(tiny_bert, tiny_data, tmp_path / "out", peft=LORA,
                                       training={**TRAINING, "num_epochs": 1, "seeds": [7, 8]}))
    out = run(cfg).output_dir
    rec = _record(out)
    assert rec.adapter is not None and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()  # the adapter alone, as in a single run
    seeds = rec.experiments.seeds
    assert len({r.train_loss for r in seeds.runs}) == 2
    kept = next(r for r in seeds.runs if r.seed == seeds.kept_seed)
    model = AutoPeftModelForSequenceClassification.from_pretrained(str(out))
    again = _evaluate(model, AutoTokenizer.from_pretrained(str(out)), out)
    assert again.metrics["accuracy"] == pytest.approx(kept.test_metrics["accuracy"])
    assert rec.evaluation.metrics["accuracy"] == pytest.approx(kept.test_metrics["accuracy"])
