"""Energy and emissions of a run's stages, as codecarbon's offline tracker measured or estimated them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StageEnergy:
    """One stage (train, evaluate, compare, ...): codecarbon's energy in kWh and emissions in kg CO2eq."""

    stage: str
    seconds: float
    energy_kwh: float
    cpu_kwh: float
    gpu_kwh: float
    ram_kwh: float
    emissions_kg: float


@dataclass
class EnergyRecord:
    """How much energy the run's stages took and how it was known (``power_sources``): measured by counters
    (RAPL, NVML, powermetrics) or estimated (TDP x load, a constant, memory size). Not measured: ``reason``."""

    measured: bool
    reason: str | None = None  # why it was not measured
    tool: str = "codecarbon"
    tool_version: str | None = None
    tracker: str = "OfflineEmissionsTracker"
    tracking_mode: str = "machine"  # "machine": the whole machine; "process": this process and its children
    estimated: bool = True  # any component's power was estimated rather than read from counters
    power_sources: dict[str, str] = field(default_factory=dict)  # "cpu"/"gpu"/"ram" -> how its power was known
    cpu_model: str | None = None
    cpu_count: int | None = None
    cpu_tdp_w: float | None = None
    gpu_model: str | None = None
    gpu_count: int = 0
    ram_total_gb: float | None = None
    country_iso_code: str | None = None  # from energy.country_iso_code (None: codecarbon's world average)
    country_name: str | None = None
    region: str | None = None
    carbon_intensity_g_per_kwh: float | None = None
    pue: float = 1.0
    stages: list[StageEnergy] = field(default_factory=list)
    evaluated_tokens: int | None = None  # tokens the fine-tuned model's evaluation scored (the `evaluate` stage)
    tokens_note: str | None = None  # what counts as an evaluated token for the task
