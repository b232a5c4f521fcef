"""The card's "Environmental impact" section and the ``co2_eq_emissions`` metadata, from the energy record."""

from __future__ import annotations

from typing import Any

from cardgen.card.format import md_escape
from cardgen.record import RunRecord

STAGE_NAMES = {"evaluate_base": "evaluate the base", "train": "train", "evaluate": "evaluate",
               "compare": "compare with the base", "general": "forgetting check", "benchmark": "benchmark"}


def number(value: float) -> str:
    """A small positive quantity to three significant digits, never in scientific notation."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    digits = max(0, 2 - int(f"{abs(value):e}".split("e")[1]))
    return f"{value:.{digits}f}"


def hardware_used(record: RunRecord) -> str:
    """The hardware codecarbon saw, e.g. "1 x NVIDIA H100, AMD EPYC (2 threads), 23.5 GB RAM"."""
    e = record.energy
    assert e is not None
    parts = []
    if e.gpu_count and e.gpu_model:
        parts.append(f"{e.gpu_count} x {e.gpu_model}")
    parts.append(f"{e.cpu_model or record.environment.device_name} ({e.cpu_count or record.environment.cpu_count} "
                 "CPU threads)")
    if e.ram_total_gb:
        parts.append(f"{e.ram_total_gb:g} GB RAM")
    return ", ".join(parts)


def location(record: RunRecord) -> str | None:
    """Where the run happened, as the config says (None when energy.country_iso_code is unset)."""
    e = record.energy
    if e is None or not e.country_iso_code:
        return None
    name = e.country_name or e.country_iso_code
    return f"{name} ({e.country_iso_code})" + (f", {e.region}" if e.region else "")


def co2_metadata(record: RunRecord) -> dict[str, Any] | None:
    """``co2_eq_emissions`` for the Hub metadata: the training stage's grams (None without a measured training)."""
    e = record.energy
    train = next((s for s in e.stages if s.stage == "train"), None) if e is not None and e.measured else None
    if train is None or record.training is None:
        return None
    out: dict[str, Any] = {"emissions": float(f"{train.emissions_kg * 1000:.6g}"), "source": "codecarbon",
                           "training_type": "fine-tuning"}
    where = location(record)
    if where:
        out["geographical_location"] = where
    out["hardware_used"] = hardware_used(record)
    return out


def energy_context(record: RunRecord) -> dict[str, Any] | None:
    """What the Environmental impact section prints (None for records made before energy was recorded)."""
    e = record.energy
    if e is None:
        return None
    if not e.measured:
        return {"measured": False, "reason": md_escape(e.reason or "no tracker ran")}
    rows = [{"stage": STAGE_NAMES.get(s.stage, s.stage), "seconds": f"{s.seconds:.1f}",
             "wh": number(s.energy_kwh * 1000), "cpu": number(s.cpu_kwh * 1000), "gpu": number(s.gpu_kwh * 1000),
             "ram": number(s.ram_kwh * 1000), "g": number(s.emissions_kg * 1000)} for s in e.stages]
    total_kwh = sum(s.energy_kwh for s in e.stages)
    total_g = sum(s.emissions_kg for s in e.stages) * 1000
    evaluate = next((s for s in e.stages if s.stage == "evaluate"), None)
    per_1k = None
    if evaluate is not None and e.evaluated_tokens:
        per_1k = (f"{number(evaluate.energy_kwh * 1e6 / e.evaluated_tokens)} Wh per 1,000 evaluated tokens: "
                  f"{e.evaluated_tokens:,} {e.tokens_note or 'tokens'}, in {evaluate.seconds:.1f} s of the "
                  f"{'fine-tuned ' if record.training else ''}model's evaluation")
    sources = "; ".join(f"{part.upper()}: {md_escape(how)}" for part, how in e.power_sources.items())
    how = (f"Power was **estimated**, not read from hardware counters ({sources})" if e.estimated
           else f"Power was measured by hardware counters ({sources})")
    where = md_escape(location(record) or "") or None
    intensity = f"{e.carbon_intensity_g_per_kwh:g} g CO2eq/kWh" if e.carbon_intensity_g_per_kwh else "unknown"
    carbon = (f"Carbon intensity {intensity}: the energy mix of {where} in codecarbon's data (location from "
              "`energy.country_iso_code`)" if where else
              f"Carbon intensity {intensity}: codecarbon's world average (no `energy.country_iso_code` in the config)")
    scope = ("the whole machine (other processes running at the same time included)" if e.tracking_mode == "machine"
             else "this process and its children only")
    co2 = co2_metadata(record)
    return {
        "measured": True, "rows": rows, "total_wh": number(total_kwh * 1000), "total_g": number(total_g),
        "tool": f"codecarbon {e.tool_version or ''} `{e.tracker}` (offline: no network calls)".replace("  ", " "),
        "how": how, "estimated": e.estimated, "scope": scope, "carbon": carbon,
        "hardware": md_escape(hardware_used(record)), "per_1k": per_1k, "pue": f"{e.pue:g}",
        "metadata_g": number(co2["emissions"]) if co2 else None,
    }
