"""CardgenCallback in a plain Trainer script that knows nothing else of cardgen: run.json, README.md and plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cardgen.record import load_record

SCRIPT = '''
import json, sys
import numpy as np
import datasets
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments
from cardgen import CardgenCallback

model_dir, data_dir, out = sys.argv[1:4]
tok = AutoTokenizer.from_pretrained(model_dir)
labels = {"negative": 0, "positive": 1}

def load(name):
    rows = [json.loads(line) for line in open(f"{data_dir}/{name}.jsonl")]
    ds = datasets.Dataset.from_dict({"text": [r["text"] for r in rows], "label": [labels[r["label"]] for r in rows]})
    return ds.map(lambda b: tok(b["text"], truncation=True, max_length=32), batched=True)

train, valid, test = load("train"), load("validation"), load("test")
model = AutoModelForSequenceClassification.from_pretrained(
    model_dir, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id=labels)

def accuracy(p):
    return {"accuracy": float((np.argmax(p.predictions, axis=-1) == p.label_ids).mean())}

args = TrainingArguments(output_dir=f"{out}/checkpoints", learning_rate=5e-3, num_train_epochs=4,
                         per_device_train_batch_size=16, per_device_eval_batch_size=32, seed=7,
                         eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch",
                         load_best_model_at_end=True, metric_for_best_model="accuracy", save_total_limit=1,
                         report_to="none", disable_tqdm=True, use_cpu=True)
trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=valid, processing_class=tok,
                  compute_metrics=accuracy,
                  callbacks=[CardgenCallback(out, model_name="script-sentiment", base_model="test-org/tiny-bert",
                                             dataset_name="tiny sentiment", license="mit", max_length=32,
                                             description="A tiny sentiment classifier from a plain script.")])
trainer.train()
open(f"{out}/after_train.md", "w").write(open(f"{out}/README.md").read())
trainer.evaluate()  # the validation split again
open(f"{out}/after_validation.json", "w").write(open(f"{out}/run.json").read())
trainer.evaluate(test, metric_key_prefix="test")
'''


@pytest.fixture(scope="module")
def script_run(tiny_bert: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("callback")
    script = root / "train.py"
    script.write_text(SCRIPT)
    out = root / "out"
    done = subprocess.run([sys.executable, str(script), str(tiny_bert), str(tiny_data), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_callback_writes_record_card_and_plots(script_run: Path) -> None:
    for name in ("run.json", "README.md", "training_curves.png"):
        assert (script_run / name).is_file(), name
    record = load_record(script_run)
    assert record.extras["source"] == "CardgenCallback"
    tr = record.training
    assert tr is not None and len(tr.epochs) == 4
    assert all(r.training_loss is not None and r.validation_loss is not None for r in tr.epochs)
    assert all("accuracy" in r.metrics for r in tr.epochs)
    assert tr.hyperparameters["learning_rate"] == 5e-3 and tr.hyperparameters["train_batch_size"] == 16
    assert tr.arguments["seed"] == 7 and "learning_rate" in tr.non_default
    assert tr.global_step == 40 and tr.train_loss is not None and tr.num_devices == 1
    assert tr.best_metric == max(r.metrics["accuracy"] for r in tr.epochs)
    assert record.environment.packages["transformers"] and record.environment.python
    assert record.model.architecture == "BertForSequenceClassification" and record.model.num_parameters > 0
    assert record.data.label_names == ["negative", "positive"]
    assert record.data.splits["train"].num_examples == 160 and record.data.splits["validation"].num_examples == 48
    assert sum(record.data.splits["train"].label_distribution.values()) == 160
    assert record.data.splits["train"].token_length["max"] <= 32
    assert record.data.report["basis"] == "token ids"
    assert [p["file"] for p in record.extras["plots"]] == ["training_curves.png"]


def test_callback_card_reports_the_held_out_evaluation(script_run: Path) -> None:
    from huggingface_hub import ModelCard

    record = load_record(script_run)
    ev = record.evaluation
    assert ev is not None and ev.split == "test" and ev.num_examples == 64
    assert 0.0 <= ev.metrics["accuracy"] <= 1.0 and "loss" in ev.metrics and "runtime" not in ev.metrics
    text = (script_run / "README.md").read_text()
    assert "held-out **test** split (64 examples, never used for model selection)" in text
    assert "A tiny sentiment classifier from a plain script." in text
    assert "- learning_rate: 0.005" in text and "| Training Loss | Epoch | Step | Validation Loss | Accuracy |" in text
    assert "![Training loss per step and learning rate; validation loss and metric per epoch](training_curves.png)" in text
    # the callback's own unedited card is rendered afresh, so text outside the markers follows the new results
    assert "(64 test examples)" in text and "48 validation examples" not in text
    assert "Stage wall times (s): train " in text and ", evaluate " in text
    card = ModelCard.load(script_run / "README.md")
    assert card.data.license == "mit" and card.data.base_model == "test-org/tiny-bert"
    results = {(r.metric_type, r.dataset_split): r.metric_value for r in card.data.eval_results}
    assert results[("accuracy", "test")] == pytest.approx(round(ev.metrics["accuracy"], 4))


def test_callback_card_after_training_marks_validation_results_optimistic(script_run: Path) -> None:
    text = (script_run / "after_train.md").read_text()
    assert "on the **validation** split (48 examples)" in text
    assert "optimistic" in text and "never used for model selection" not in text


def test_callback_recognises_a_second_evaluation_of_the_validation_split(script_run: Path) -> None:
    ev = load_record(script_run / "after_validation.json").evaluation
    assert ev is not None and (ev.split, ev.num_examples) == ("validation", 48)
    assert ev.extra["used_for_model_selection"] is True


def test_callback_card_passes_lint(script_run: Path) -> None:
    from cardgen.card.lint import lint_card

    result = lint_card(script_run / "README.md")
    assert result.ok, [f.message for f in result.problems]
    assert json.loads(json.dumps(result.to_dict()))["ok"] is True


def test_callback_is_exported_lazily() -> None:
    code = "import sys, cardgen; assert 'transformers' not in sys.modules; cardgen.CardgenCallback; " \
           "assert 'transformers' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
