"""Energy and emissions per stage with codecarbon's ``OfflineEmissionsTracker`` (no network calls, ever).

One tracker per run measures each tracked stage as a codecarbon task. How power was known is read from the
tracker's hardware and written into the record: RAPL or NVML counters are measurements; "TDP x CPU load", a
constant share of TDP, and RAM from its size are estimates, and the card then says "estimated". codecarbon is an
optional extra (``cardgen[energy]``): without it the record says energy was not measured, and why.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cardgen.errors import ConfigError
from cardgen.record import EnergyRecord, EvaluationRecord, StageEnergy

if TYPE_CHECKING:
    import pandas as pd

    from cardgen.config import RunConfig

TRACKED = ("evaluate_base", "train", "evaluate", "compare", "general", "benchmark")
INSTALL_HINT = "pip install 'cardgen[energy]'"


class EnergyMeter:
    """Called with a stage name around a stage (``StageTimer`` does it): tracked stages are measured."""

    def __init__(self, tracker: Any = None, reason: str | None = None, settings: dict[str, Any] | None = None):
        self.tracker = tracker
        self.reason = reason  # why nothing is measured (tracker None)
        self.settings = settings or {}
        self.stages: list[StageEnergy] = []
        self.last: Any = None  # codecarbon's EmissionsData of the last stage (hardware and location facts)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.tracker is None or stage not in TRACKED:
            yield
            return
        if not self._call(self.tracker.start_task, stage)[0]:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            ok, data = self._call(self.tracker.stop_task)
            if ok and data is not None:
                self.last = data
                self._add(StageEnergy(
                    stage=stage, seconds=time.perf_counter() - start, energy_kwh=float(data.energy_consumed),
                    cpu_kwh=float(data.cpu_energy), gpu_kwh=float(data.gpu_energy), ram_kwh=float(data.ram_energy),
                    emissions_kg=float(data.emissions)))

    def _call(self, method: Any, *args: Any) -> tuple[bool, Any]:
        """``(succeeded, result)`` of a tracker call; when codecarbon fails, measuring stops (the record says why)
        and the run goes on."""
        try:
            return True, method(*args)
        except Exception as exc:  # codecarbon's hardware probes raise whatever the platform raises
            from cardgen.errors import first_line

            self.tracker, self.stages = None, []
            self.reason = f"codecarbon failed ({type(exc).__name__}: {first_line(exc)})"
            return False, None

    def _add(self, new: StageEnergy) -> None:
        """A stage measured again (the base on the test split, then on the general set) adds to its first entry."""
        old = next((s for s in self.stages if s.stage == new.stage), None)
        if old is None:
            new.seconds = round(new.seconds, 2)
            self.stages.append(new)
            return
        for name in ("seconds", "energy_kwh", "cpu_kwh", "gpu_kwh", "ram_kwh", "emissions_kg"):
            setattr(old, name, getattr(old, name) + getattr(new, name))
        old.seconds = round(old.seconds, 2)

    def record(self, evaluated_tokens: int | None = None, tokens_note: str | None = None) -> EnergyRecord:
        """What was measured, how, and where (a record saying why not, without a tracker)."""
        if self.tracker is None:
            return EnergyRecord(measured=False, reason=self.reason)
        sources, estimated, tdp = power_sources(self.tracker)
        data = self.last
        energy = sum(s.energy_kwh for s in self.stages)
        emissions = sum(s.emissions_kg for s in self.stages)
        return EnergyRecord(
            measured=bool(self.stages), reason=None if self.stages else "codecarbon returned no measurement",
            tool_version=self.settings.get("version"), tracking_mode=self.settings.get("tracking_mode", "machine"),
            estimated=estimated, power_sources=sources, cpu_model=getattr(data, "cpu_model", None) or None,
            cpu_count=getattr(data, "cpu_count", None), cpu_tdp_w=tdp,
            gpu_model=getattr(data, "gpu_model", None) or None, gpu_count=int(getattr(data, "gpu_count", 0) or 0),
            ram_total_gb=round(float(getattr(data, "ram_total_size", 0.0) or 0.0), 1) or None,
            country_iso_code=self.settings.get("country_iso_code"),
            country_name=self.settings.get("country_name"), region=self.settings.get("region"),
            carbon_intensity_g_per_kwh=round(emissions / energy * 1000, 1) if energy > 0 else None,
            pue=float(self.settings.get("pue", 1.0)), stages=list(self.stages), evaluated_tokens=evaluated_tokens,
            tokens_note=tokens_note,
        )


def energy_meter(cfg: RunConfig, main: bool = True) -> EnergyMeter:
    """The run's meter: codecarbon's offline tracker when it is installed and ``energy.enabled``.

    Raises:
        ConfigError: ``energy.country_iso_code`` is not a country codecarbon has energy-mix data for (checked
            before anything runs).
    """
    e = cfg.energy
    if not main:
        return EnergyMeter(reason="measured by the main process")
    if not e.enabled:
        return EnergyMeter(reason="energy.enabled is false")
    try:
        import codecarbon
        from codecarbon import OfflineEmissionsTracker
        from codecarbon.input import DataSource
    except ImportError:
        return EnergyMeter(reason=f"codecarbon is not installed ({INSTALL_HINT})")
    logging.getLogger("codecarbon").setLevel(logging.CRITICAL)  # cardgen reports; codecarbon's log stays quiet
    mix = DataSource().get_global_energy_mix_data()
    country = None
    if e.country_iso_code is not None:
        if e.country_iso_code not in mix:
            raise ConfigError(f"`energy.country_iso_code` {e.country_iso_code!r} is not a country in codecarbon's "
                              f"energy-mix data ({len(mix)} countries)",
                              "use a 3-letter ISO 3166 code such as FRA, DEU or USA, or leave it unset for the "
                              "world average")
        country = mix[e.country_iso_code].get("country_name")
    kwargs: dict[str, Any] = {"country_iso_code": e.country_iso_code} if e.country_iso_code else {}
    if e.region:
        kwargs["region"] = e.region
    tracker = OfflineEmissionsTracker(
        project_name="cardgen", save_to_file=False, save_to_api=False, log_level="critical",
        allow_multiple_runs=True, tracking_mode=e.tracking_mode, measure_power_secs=e.measure_power_secs,
        pue=e.pue, **kwargs)
    return EnergyMeter(tracker, settings={
        "version": codecarbon.__version__, "tracking_mode": e.tracking_mode, "country_iso_code": e.country_iso_code,
        "country_name": country, "region": e.region, "pue": e.pue})


def power_sources(tracker: Any) -> tuple[dict[str, str], bool, float | None]:
    """How codecarbon knows each component's power: ``({"cpu": ..., "ram": ...}, estimated, cpu TDP in W)``.

    Read from the tracker's hardware objects (codecarbon 3.x keeps the CPU's mode in ``_mode``).
    """
    sources: dict[str, str] = {}
    estimated = False
    tdp = None
    for hw in getattr(tracker, "_hardware", []):
        kind = type(hw).__name__
        if kind == "CPU":
            mode, tdp = getattr(hw, "_mode", ""), getattr(hw, "_tdp", None)
            model = getattr(hw, "_model", "the CPU")
            described = {
                "intel_rapl": "measured: RAPL energy counters",
                "intel_power_gadget": "measured: Intel Power Gadget",
                "windows_emi": "measured: the Windows energy meter interface",
                "cpu_load": f"estimated: TDP x CPU load ({tdp} W TDP for {model}; no power counters readable)",
                "constant": f"estimated: a constant share of the {tdp} W TDP of {model} (no counters, no load)",
            }
            sources["cpu"] = described.get(mode, f"estimated: codecarbon mode {mode!r}")
            estimated |= not sources["cpu"].startswith("measured")
        elif kind == "GPU":
            sources["gpu"] = "measured: NVML energy counters"
        elif kind == "AppleSiliconChip":
            sources[str(getattr(hw, "chip_part", "cpu")).lower()] = "measured: powermetrics"
        elif kind == "RAM":
            forced = getattr(hw, "_force_ram_power", None)
            sources["ram"] = (f"a constant {forced} W (given)" if forced is not None
                              else "estimated: from the memory size (codecarbon's per-module model)")
            estimated = True
    return sources, estimated, float(tdp) if tdp is not None else None


def evaluated_tokens(task: Any, ev: EvaluationRecord | None, frame: pd.DataFrame | None, tokenizer: Any,
                     cfg: RunConfig) -> tuple[int | None, str | None]:
    """Tokens the fine-tuned model's evaluation read (the ``evaluate`` stage), and what counts as one."""
    if ev is None or frame is None:
        return None, None
    if task.NAME == "causal-lm":
        note = "tokens predicted, each token of the text once"
        note += " (the stage also generated the prompts' continuations)" if ev.extra.get("generations") else ""
        return int(ev.extra.get("predicted_tokens", 0)) or None, note
    if task.NAME == "question-answering":
        inputs = task.featurize(frame, tokenizer, cfg).inputs
        return sum(len(f["input_ids"]) for f in inputs), "tokens of the question-and-context windows"
    if hasattr(task, "encode"):
        return sum(len(f["input_ids"]) for f in task.encode(frame, tokenizer, cfg)), "input tokens, as truncated"
    return None, None
