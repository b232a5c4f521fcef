"""Energy with codecarbon's offline tracker (issue 16 part 6): per stage, how power was known, the card's
Environmental impact section and co2_eq_emissions metadata, and the card without codecarbon."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import base_config

from cardgen.config import load_config
from cardgen.errors import ConfigError
from cardgen.experiments.energy import energy_meter

pytest.importorskip("codecarbon", reason="pip install 'cardgen[energy]'")


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


def config(tmp_path: Path, **energy: Any) -> Any:
    cfg = base_config(tmp_path, tmp_path, tmp_path / "out", energy=energy)
    return load_config(data=cfg)


def test_offline_tracker_measures_stages_without_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from codecarbon import OfflineEmissionsTracker

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network call: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    meter = energy_meter(config(tmp_path, country_iso_code="FRA"))
    assert isinstance(meter.tracker, OfflineEmissionsTracker)
    with meter("train"):
        busy(0.5)
    with meter("load"):  # not a tracked stage
        busy(0.1)
    with meter("evaluate"):
        busy(0.2)
    record = meter.record(evaluated_tokens=2000, tokens_note="input tokens")
    assert record.measured and [s.stage for s in record.stages] == ["train", "evaluate"]
    train = record.stages[0]
    assert train.energy_kwh > 0 and train.emissions_kg > 0 and train.seconds >= 0.5
    assert train.energy_kwh == pytest.approx(train.cpu_kwh + train.gpu_kwh + train.ram_kwh, rel=1e-6)
    assert record.country_iso_code == "FRA" and record.country_name == "France"
    assert record.carbon_intensity_g_per_kwh == pytest.approx(train.emissions_kg / train.energy_kwh * 1000, rel=0.01)
    # how each component's power was known: counters are measurements, anything else an estimate
    assert "cpu" in record.power_sources and "ram" in record.power_sources
    assert record.estimated == any(not how.startswith("measured") for how in record.power_sources.values())


def test_a_stage_measured_twice_adds_up(tmp_path: Path) -> None:
    meter = energy_meter(config(tmp_path))
    for _ in range(2):
        with meter("evaluate_base"):
            busy(0.1)
    (stage,) = meter.record().stages
    assert stage.seconds >= 0.2


def test_unknown_country_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'XYZ' is not a country in codecarbon's energy-mix data"):
        energy_meter(config(tmp_path, country_iso_code="XYZ"))
    with pytest.raises(ConfigError, match="3-letter ISO code"):
        config(tmp_path, country_iso_code="France")


def test_without_codecarbon_or_disabled_nothing_is_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "codecarbon", None)  # as if `cardgen[energy]` were not installed
    record = energy_meter(config(tmp_path)).record()
    assert not record.measured and record.reason == "codecarbon is not installed (pip install 'cardgen[energy]')"
    monkeypatch.delitem(sys.modules, "codecarbon")
    assert energy_meter(config(tmp_path, enabled=False)).record().reason == "energy.enabled is false"


@pytest.fixture(scope="module")
def energy_run(tiny_bert: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cardgen.pipeline import run

    out = tmp_path_factory.mktemp("energy") / "out"
    cfg = load_config(data=base_config(tiny_bert, tiny_data, out, training={"num_epochs": 1},
                                       energy={"country_iso_code": "FRA"}))
    return run(cfg).output_dir


def test_run_records_energy_per_stage_and_tokens(energy_run: Path) -> None:
    from cardgen.record import load_record
    from cardgen.tasks import classification
    from cardgen.tasks.classification import encode

    record = load_record(energy_run)
    e = record.energy
    assert e is not None and e.measured and e.tool == "codecarbon" and e.tool_version
    assert [s.stage for s in e.stages] == ["train", "evaluate"]  # compare and benchmark are off in this run
    assert e.tracking_mode == "machine"
    import pandas as pd
    from transformers import AutoTokenizer

    cfg = load_config(data=record.config)
    test = pd.read_json(cfg.data.test, lines=True)
    tok = AutoTokenizer.from_pretrained(record.config["model"]["name_or_path"])
    assert classification.NAME == "text-classification"
    assert e.evaluated_tokens == sum(len(f["input_ids"]) for f in encode(test, tok, cfg))


def test_card_environmental_impact_and_co2_metadata(energy_run: Path) -> None:
    from huggingface_hub import ModelCard

    from cardgen.record import load_record

    record = load_record(energy_run)
    assert record.energy is not None
    card = ModelCard.load(energy_run / "README.md")
    co2 = card.data.co2_eq_emissions
    train = next(s for s in record.energy.stages if s.stage == "train")
    assert co2["emissions"] == pytest.approx(train.emissions_kg * 1000, rel=1e-4)
    assert co2["source"] == "codecarbon" and co2["training_type"] == "fine-tuning"
    assert co2["geographical_location"] == "France (FRA)" and co2["hardware_used"]
    text = (energy_run / "README.md").read_text()
    section = text.split("## Environmental impact", 1)[1].split("<!-- cardgen:end energy -->", 1)[0]
    assert "OfflineEmissionsTracker" in section and "Wh per 1,000 evaluated tokens" in section
    assert "| train |" in section and "| evaluate |" in section and "France (FRA)" in section
    assert ("**estimated**" in section) == record.energy.estimated
    for how in record.energy.power_sources.values():
        assert how in section  # names how power was measured: counters, TDP x load, a constant


def test_card_says_when_energy_was_not_measured(energy_run: Path, tmp_path: Path) -> None:
    from cardgen.card.render import write_card
    from cardgen.record import EnergyRecord, load_record

    record = load_record(energy_run)
    record.energy = EnergyRecord(measured=False, reason="codecarbon is not installed (pip install 'cardgen[energy]')")
    write_card(record, tmp_path / "README.md")
    text = (tmp_path / "README.md").read_text()
    assert ("Energy was not measured: codecarbon is not installed (pip install 'cardgen\\[energy\\]')" in text
            or "Energy was not measured: codecarbon is not installed (pip install 'cardgen[energy]')" in text)
    assert "co2_eq_emissions" not in text.split("---")[1]


def test_a_failing_tracker_stops_measuring_and_the_run_goes_on(tmp_path: Path) -> None:
    meter = energy_meter(config(tmp_path))

    def broken(*args: Any) -> None:
        raise OSError("no such device")

    with meter("train"):
        busy(0.05)
    meter.tracker.start_task = broken  # type: ignore[union-attr]
    with meter("evaluate"):
        busy(0.05)  # the stage itself runs
    record = meter.record()
    assert not record.measured and record.reason == "codecarbon failed (OSError: no such device)"
