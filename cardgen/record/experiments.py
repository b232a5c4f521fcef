"""Records of experiments beyond one training run (issue 16): the same config trained on several seeds, and a
hyperparameter search. ``RunRecord.experiments`` holds them; the kept model is documented by the rest of the
record as usual."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SpreadStats:
    """One metric over seeds: mean, sample standard deviation and a t-interval of the mean."""

    n: int
    mean: float
    std: float | None  # sample standard deviation (ddof 1); None for a single value
    low: float | None  # the interval of the mean: mean -/+ t(confidence, n - 1) * std / sqrt(n)
    high: float | None
    minimum: float
    maximum: float
    confidence: float = 0.95


@dataclass
class SeedRun:
    """One seed's training: its best epoch on validation and its model's results on the evaluation split."""

    seed: int
    best_epoch: float | None
    best_step: int | None
    validation_metric: float | None  # the best epoch's value of the metric that picks epochs and seeds
    test_metrics: dict[str, float] = field(default_factory=dict)  # on the run's evaluation split
    train_loss: float | None = None
    train_runtime_s: float | None = None
    resumed_from: str | None = None


@dataclass
class SeedsRecord:
    """The same config trained once per seed; the seed best on validation is the model kept."""

    seeds: list[int]
    metric: str  # validation metric that picks each run's best epoch and the kept seed
    greater_is_better: bool
    split: str  # the evaluation split of ``SeedRun.test_metrics``
    runs: list[SeedRun]
    kept_seed: int | None
    test: dict[str, SpreadStats] = field(default_factory=dict)  # metric -> spread over the seeds
    validation: SpreadStats | None = None
    interval_method: str = "Student t interval of the mean over seeds"


@dataclass
class SearchSpaceEntry:
    """One searched config key and its distribution, as the study sampled it."""

    key: str
    type: str  # log-uniform, uniform, int, categorical
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] = field(default_factory=list)


@dataclass
class SweepTrial:
    """One trial of the study; ``objective`` is its best epoch's validation metric."""

    number: int
    state: str  # complete, pruned, failed, running, waiting
    params: dict[str, Any]
    objective: float | None = None
    best_epoch: float | None = None
    values: dict[str, float] = field(default_factory=dict)  # evaluation number ("1", "2", ...) -> metric
    seconds: float | None = None
    worker: str | None = None  # host:pid that ran it
    retry_of: int | None = None  # the trial this one re-ran after its worker died or stopped
    note: str | None = None
    resumed_from: str | None = None  # the checkpoint of the trial it re-ran, where that was on this host


@dataclass
class SweepRecord:
    """The hyperparameter search behind the kept model."""

    study_name: str
    storage: str  # the optuna storage URL, password removed
    metric: str
    direction: str  # maximize or minimize
    trials_requested: int
    sampler: str
    pruner: str
    space: list[SearchSpaceEntry]
    trials: list[SweepTrial]
    best_trial: int | None
    kept_trial: int | None  # the trial whose best checkpoint this output directory holds
    kept_elsewhere: str | None = None  # where the study's best trial ran, when not here
    then_seeds: int | None = None
    seconds: float | None = None  # this worker's wall time in the study


@dataclass
class ExperimentsRecord:
    """What ran beyond one training: seeds, a sweep, or a sweep whose best settings were retrained on seeds."""

    seeds: SeedsRecord | None = None
    sweep: SweepRecord | None = None
