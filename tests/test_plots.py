"""Plots beside the card: training curves, confusion matrix, latency; PNGs, relative links, record entries."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from cardgen.card.plots import confusion_counts, latency_series, write_plots
from cardgen.record import load_record

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def benchmark_dict(p50_base: float = 0.004, p50_ft: float = 0.0042) -> dict:
    """A benchmark record in the shape cardgen.benchmark writes (to_dict of BenchmarkRecord)."""
    def model(name: str, p50: float) -> dict:
        return {"name": name, "device": "cpu", "num_parameters": 1000, "batches": [
            {"batch_size": b, "sequence_length": 32, "tokens_per_batch": 32 * b, "cold_s": 0.05,
             "latency": {"batch_size": b, "count": 10, "mean_s": p50 * b, "p50_s": p50 * b, "p90_s": p50 * b * 1.2}}
            for b in (1, 8)]}

    return {"settings": {"device": "cpu", "device_name": "Test CPU", "precision": "fp32"},
            "models": {"base": model("base", p50_base), "fine-tuned": model("fine-tuned", p50_ft)}}


@pytest.fixture()
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(tiny_run, target, ignore=shutil.ignore_patterns("*.safetensors"))
    return target


def test_pipeline_writes_plots_beside_the_card(tiny_run: Path) -> None:
    record = load_record(tiny_run)
    files = [p["file"] for p in record.extras["plots"]]
    assert files == ["training_curves.png", "confusion_matrix.png"]  # no benchmark in this run: no latency plot
    card = (tiny_run / "README.md").read_text()
    for plot in record.extras["plots"]:
        width, height = png_size(tiny_run / plot["file"])
        assert width > 300 and height > 200
        assert f"![{plot['title']}]({plot['file']})" in card  # relative path, from the card's directory
    assert not (tiny_run / "latency.png").exists()
    assert not list(tiny_run.glob(".*.tmp"))  # atomic writes leave no temp files


def test_confusion_counts_match_the_predictions(tiny_run: Path) -> None:
    record = load_record(tiny_run)
    ev = record.evaluation
    assert ev is not None
    found = confusion_counts(record)
    assert found is not None
    names, counts = found
    assert names == ["negative", "positive"]
    assert counts.sum() == ev.num_examples
    assert counts.trace() == sum(g == p for g, p in zip(ev.labels, ev.predictions, strict=True))
    assert counts[1].sum() == sum(1 for g in ev.labels if g == 1)


def test_latency_plot_when_the_record_has_a_benchmark(run_copy: Path) -> None:
    record = load_record(run_copy)
    record.benchmark = benchmark_dict()
    plots = write_plots(record, run_copy)
    assert [p["name"] for p in plots] == ["training_curves", "confusion_matrix", "latency"]
    assert record.extras["plots"] == plots
    png_size(run_copy / "latency.png")
    series = latency_series(record.benchmark)
    assert series["base"][8] == pytest.approx((32.0, 38.4))
    # a benchmark of an unknown shape (or none) means no latency plot, and a stale one is removed
    record.benchmark = {"results": "unknown shape"}
    plots = write_plots(record, run_copy)
    assert "latency" not in [p["name"] for p in plots]
    assert not (run_copy / "latency.png").exists()


@pytest.mark.parametrize("benchmark", [None, {}, {"models": None}, {"models": {"base": {"batches": "x"}}},
                                       {"models": [{"name": "base", "batches": [{"batch_size": 1}]}]},
                                       {"models": {"base": {"batches": [{"latency": {"p50_s": "fast"}}]}}}])
def test_latency_series_is_defensive(benchmark: object) -> None:
    assert latency_series(benchmark) == {}


def test_latency_series_accepts_a_list_of_models() -> None:
    models = list(benchmark_dict()["models"].values())
    series = latency_series({"models": models})
    assert set(series) == {"base", "fine-tuned"} and set(series["base"]) == {1, 8}


def test_no_training_no_curves(run_copy: Path) -> None:
    record = load_record(run_copy)
    record.training = None
    record.evaluation = None
    assert write_plots(record, run_copy) == []
    assert not (run_copy / "training_curves.png").exists() and not (run_copy / "confusion_matrix.png").exists()


def test_plots_are_reproducible(run_copy: Path) -> None:
    record = load_record(run_copy)
    before = (run_copy / "training_curves.png").read_bytes()
    write_plots(record, run_copy)
    assert (run_copy / "training_curves.png").read_bytes() == before


def test_rerendered_card_links_the_recorded_plots(run_copy: Path) -> None:
    from cardgen.card.render import render_card

    record = load_record(run_copy)
    record.benchmark = benchmark_dict()
    write_plots(record, run_copy)
    record.benchmark = None  # the speed section's shape is not this test's business; the plot list is
    assert "![Latency of the base and the fine-tuned model](latency.png)" in render_card(record)
    record.extras["plots"] = []
    assert "## Plots" not in render_card(record)


def test_latency_plot_from_a_real_benchmark_record(tiny_run: Path, tiny_bert: Path, run_copy: Path) -> None:
    """The benchmark stage puts its dataclass into the record before the plots are drawn: read that shape."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from cardgen.bench.scenarios import benchmark_models

    tokenizer = AutoTokenizer.from_pretrained(tiny_run)
    models = {"base": (AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2), tokenizer),
              "fine-tuned": (AutoModelForSequenceClassification.from_pretrained(tiny_run), tokenizer)}
    record = load_record(run_copy)
    record.benchmark = benchmark_models(models, batch_sizes=[1, 4], sequence_length=16, warmup=1, min_iterations=3,
                                        min_seconds=0.0, rounds=1)
    series = latency_series(record.benchmark)
    assert set(series) == {"base", "fine-tuned"} and set(series["base"]) == {1, 4}
    assert "latency" in [p["name"] for p in write_plots(record, run_copy)]
    png_size(run_copy / "latency.png")
