"""`cardgen run` and `cardgen card` end to end on the tiny model: outputs, record, card, CLI behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cardgen.cli import cli
from cardgen.record import load_record


def test_run_writes_record_config_card_and_model(tiny_run: Path) -> None:
    for name in ("run.json", "README.md", "config.yaml", "model.safetensors", "config.json", "tokenizer.json"):
        assert (tiny_run / name).is_file(), name
    assert not (tiny_run / "checkpoints").exists()  # intermediate checkpoints are cleaned up
    assert not (tiny_run / ".cardgen.lock").exists()
    record = load_record(tiny_run)
    assert record.status == "completed"
    assert record.training is not None and len(record.training.epochs) == 4
    assert record.evaluation is not None and record.evaluation.split == "test"
    assert record.evaluation.num_examples == 64 == len(record.evaluation.predictions)
    assert set(record.data.splits) == {"train", "validation", "test"}
    assert {"classifier.bias", "classifier.weight"} <= set(record.model.newly_initialized)
    assert record.environment.packages["transformers"]
    # every effective TrainingArguments value, non-defaults marked
    assert record.training.arguments["learning_rate"] == 5e-3
    assert "learning_rate" in record.training.non_default and "adam_beta1" not in record.training.non_default


def test_fine_tuning_learns_the_tiny_task(tiny_run: Path) -> None:
    record = load_record(tiny_run)
    assert record.evaluation is not None
    assert record.evaluation.metrics["accuracy"] > 0.8  # polar words decide the label


def test_test_metrics_recompute_from_predictions(tiny_run: Path) -> None:
    from sklearn.metrics import accuracy_score, f1_score

    ev = load_record(tiny_run).evaluation
    assert ev is not None
    assert ev.metrics["accuracy"] == pytest.approx(accuracy_score(ev.labels, ev.predictions))
    assert ev.metrics["f1_macro"] == pytest.approx(f1_score(ev.labels, ev.predictions, average="macro"))
    assert ev.metrics["f1_positive"] == pytest.approx(f1_score(ev.labels, ev.predictions, pos_label=1))


def test_best_epoch_and_per_epoch_rows(tiny_run: Path) -> None:
    tr = load_record(tiny_run).training
    assert tr is not None
    best = max(tr.epochs, key=lambda r: (r.metrics["accuracy"], -r.step))
    assert tr.best_metric == pytest.approx(best.metrics["accuracy"])
    for row in tr.epochs:
        assert row.validation_loss is not None and row.training_loss is not None
        assert {"accuracy", "f1_macro", "precision_macro", "recall_macro", "f1_positive"} <= set(row.metrics)


def test_card_metadata_loads_with_huggingface_hub(tiny_run: Path) -> None:
    from huggingface_hub import ModelCard

    card = ModelCard.load(tiny_run / "README.md")
    results = {(r.metric_name, r.dataset_split): r.metric_value for r in card.data.eval_results}
    ev = load_record(tiny_run).evaluation
    assert ev is not None
    assert results[("Accuracy", "test")] == pytest.approx(round(ev.metrics["accuracy"], 4))
    assert results[("F1 (macro)", "test")] == pytest.approx(round(ev.metrics["f1_macro"], 4))
    assert card.data.base_model == "test-org/tiny-bert"
    assert card.data.pipeline_tag == "text-classification"
    assert card.data.license == "apache-2.0"
    assert "null" not in (tiny_run / "README.md").read_text().split("---")[1]


def test_card_carries_every_fact_of_the_trainer_card(tiny_run: Path) -> None:
    """The facts transformers' Trainer.create_model_card writes for a run must all be in cardgen's card."""
    text = (tiny_run / "README.md").read_text()
    tr = load_record(tiny_run).training
    assert tr is not None
    for key in ("learning_rate: 0.005", "train_batch_size: 16", "eval_batch_size: 32", "seed: 7",
                "optimizer: adamw_torch with betas=(0.9, 0.999), epsilon=1e-08", "lr_scheduler_type: linear",
                "num_epochs: 4.0"):
        assert key in text, key
    assert "| Training Loss | Epoch | Step | Validation Loss | Accuracy |" in text
    for row in tr.epochs:
        assert f"| {row.step} |" in text or f"| **{row.step}** |" in text
    for name in ("Transformers", "PyTorch", "Datasets", "Tokenizers"):
        assert f"- {name} " in text
    assert "More information needed" not in text
    assert "TODO (author)" in text  # what cardgen cannot know is visible guidance


def test_card_rerenders_from_record_alone_without_torch(tiny_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "card.md"
    code = (
        "import sys; from click.testing import CliRunner; from cardgen.cli import cli;"
        f"r = CliRunner().invoke(cli, ['card', {str(tiny_run)!r}, '--output', {str(target)!r}]);"
        "assert r.exit_code == 0, r.output; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # its speed is measured in benchmarks/, not here
    assert target.read_text() == (tiny_run / "README.md").read_text()


def test_card_with_user_template(tiny_run: Path, tmp_path: Path) -> None:
    tpl = tmp_path / "other.md.j2"
    tpl.write_text("# {{ model_name }}\n{% for n, v in results %}{{ n }}={{ v }}\n{% endfor %}")
    out = tmp_path / "other.md"
    result = CliRunner().invoke(cli, ["card", str(tiny_run), "--template", str(tpl), "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("---\n") and "# tiny-sentiment" in text and "Accuracy=" in text


def test_config_yaml_reproduces_the_run_config(tiny_run: Path) -> None:
    from cardgen.config import load_config

    resolved = yaml.safe_load((tiny_run / "config.yaml").read_text())
    again = load_config(tiny_run / "config.yaml")
    assert again.to_dict() == resolved
    assert json.loads((tiny_run / "run.json").read_text())["config"] == resolved


def test_cli_run_no_train_documents_a_checkpoint(tiny_run: Path, make_config, tmp_path: Path) -> None:
    cfg = make_config(model={"name_or_path": str(tiny_run)}, training=None)
    out = tmp_path / "doc"
    result = CliRunner().invoke(cli, ["run", str(cfg), "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    record = load_record(out)
    assert record.training is None and record.model.newly_initialized == []
    trained = load_record(tiny_run).evaluation
    assert record.evaluation is not None and trained is not None
    assert record.evaluation.predictions == trained.predictions  # same model, same data, same predictions
    assert not (out / "model.safetensors").exists()
    assert "No training" in (out / "README.md").read_text()


def test_set_overrides_and_json_summary(make_config, tmp_path: Path) -> None:
    cfg = make_config()
    out = tmp_path / "o2"
    result = CliRunner().invoke(cli, ["run", str(cfg), "-o", str(out), "--json", "--set", "training.num_epochs=1",
                                      "--set", "training.learning_rate=1e-3"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["test_metrics"]["accuracy"] >= 0
    record = load_record(out)
    assert record.training is not None and len(record.training.epochs) == 1
    assert record.config["training"]["learning_rate"] == 1e-3


def test_version_and_module_entry_point() -> None:
    from cardgen.version import __version__

    out = subprocess.run([sys.executable, "-m", "cardgen", "--version"], capture_output=True, text=True, check=True)
    assert __version__ in out.stdout
    helped = subprocess.run([sys.executable, "-m", "cardgen", "run", "--help"], capture_output=True, text=True,
                            check=True)
    assert "--set" in helped.stdout and "--no-train" in helped.stdout


def _trainer_card_facts(text: str) -> dict[str, str]:
    """The `- name: value` lines of the hyperparameter list of transformers' own Trainer card."""
    section = text.split("### Training hyperparameters", 1)[1].split("###", 1)[0]
    facts = {}
    for line in section.splitlines():
        if line.startswith("- ") and ": " in line:
            name, value = line[2:].split(": ", 1)
            facts[name.strip()] = value.strip()
    return facts


def test_card_holds_every_fact_of_trainers_own_card(tiny_bert: Path, tiny_data: Path, tmp_path: Path) -> None:
    """Train with a plain Trainer and cardgen's own arguments, let transformers write its card, compare."""
    import re

    from transformers import Trainer

    from cardgen.config import load_config
    from cardgen.models import hf_quiet
    from cardgen.pipeline import run
    from cardgen.tasks import classification
    from cardgen.train import training_arguments
    from tests.conftest import base_config

    cfg = load_config(data=base_config(tiny_bert, tiny_data, tmp_path / "cardgen", training={
        "num_epochs": 2, "gradient_accumulation_steps": 2, "warmup": 2, "weight_decay": 0.01}))
    with hf_quiet():
        data = classification.prepare_data(cfg, classification.load_model(cfg, ["negative", "positive"]).tokenizer,
                                           True)
        loaded = classification.load_model(cfg, data.label_names)
        args = training_arguments(cfg, tmp_path / "plain", "accuracy", True)
        trainer = Trainer(model=loaded.model, args=args,
                          train_dataset=classification.train_dataset(data.frames["train"], loaded.tokenizer, cfg, "t"),
                          eval_dataset=classification.train_dataset(data.frames["validation"], loaded.tokenizer, cfg,
                                                                    "v"),
                          processing_class=loaded.tokenizer,
                          data_collator=classification.collator(loaded.tokenizer, cfg),
                          compute_metrics=classification.trainer_metrics(cfg, data.label_names))
        trainer.train()
        trainer.create_model_card(model_name="plain")
    theirs = (tmp_path / "plain" / "checkpoints" / "README.md").read_text()
    ours = (run(cfg).output_dir / "README.md").read_text()

    facts = _trainer_card_facts(theirs)
    assert {"learning_rate", "train_batch_size", "eval_batch_size", "seed", "optimizer", "lr_scheduler_type",
            "num_epochs", "gradient_accumulation_steps", "total_train_batch_size",
            "lr_scheduler_warmup_steps"} <= set(facts)
    for name, value in facts.items():
        assert f"- {name}: " in ours, name
        for number in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", value):  # every number the Trainer states
            assert number in ours, (name, number)
    header = [c.strip() for c in theirs.split("### Training results", 1)[1].strip().splitlines()[0].strip("|").split("|")]
    for column in header:
        if column not in ("Training Loss", "Epoch", "Step", "Validation Loss"):
            column = {"F1 Macro": "F1 (macro)", "F1 Positive": "F1 (positive class)",
                      "Precision Macro": "Precision (macro)", "Recall Macro": "Recall (macro)"}.get(column, column)
            if "Positive" in column and "F1" not in column:
                continue  # per-class precision/recall stay in run.json, out of the table
        assert column in ours, column
    for name in ("Transformers", "Datasets", "Tokenizers"):
        version = re.search(rf"- {name} (\S+)", theirs)
        assert version and f"- {name} {version.group(1)}" in ours
    torch_version = re.search(r"- Pytorch (\S+)", theirs)
    assert torch_version and f"- PyTorch {torch_version.group(1)}" in ours
    assert "It achieves the following results on the evaluation set" in theirs
    assert "results on the held-out **test** split" in ours
