"""``cardgen reproduce``: a recorded run against its re-run, metric by metric, with what changed around it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DriftRow:
    """One metric, recorded and re-run; ``interval`` is the recorded one (None where the run had none)."""

    group: str  # "test", "base", "change", "general", "training"
    key: str
    name: str
    recorded: float
    rerun: float | None  # None: the re-run has no such number
    difference: float | None
    interval: list[float] | None = None  # [low, high] of the recorded interval
    inside: bool | None = None  # the re-run falls inside the recorded interval
    holds: bool = False


@dataclass
class Change:
    """Something around the numbers that differs: a data file, a version, the hardware."""

    kind: str  # "data", "config" (a --set override), "version" or "hardware"
    name: str
    recorded: str
    now: str


@dataclass
class ReproduceReport:
    """The drift table and what differs; ``holds`` when every metric holds (exit 0, else 1)."""

    source: str  # the run directory or Hub repo id
    holds: bool
    tolerance: float
    criterion: str  # how a metric holds: "tolerance" or "interval"
    rows: list[DriftRow] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    rerun_dir: str | None = None  # where the re-run's outputs are (None: removed after the comparison)
    rerun_status: str = "completed"
    seconds: float | None = None
