"""What `cardgen check` (and `cardgen run --dry-run`) found: the plan of a run, before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SplitPlan:
    """One split as the run would use it."""

    name: str
    num_examples: int
    source: str
    label_distribution: dict[str, int] = field(default_factory=dict)
    num_truncated: int = 0


@dataclass
class TimeEstimate:
    """Training time extrapolated from a few timed optimizer steps on the run's own model and data."""

    seconds_per_step: float
    timed_steps: int  # steps timed after one untimed warm-up step (batches of similar length, as the Trainer's)
    train_seconds: float  # seconds_per_step x total steps
    eval_seconds_per_epoch: float | None = None  # one validation pass, from the timed forward passes per example
    device: str = "cpu"


@dataclass
class RunPlan:
    """Everything a run would do, resolved and checked; `cardgen check --json` prints it."""

    config: str  # the config file, or "(flags)" for `cardgen run --model --data`
    task: str
    model: str
    architecture: str
    num_parameters: int
    label_names: list[str]
    splits: list[SplitPlan]
    max_length: int
    stages: list[str]  # in the order they would run
    output_dir: str
    card: str  # where README.md would be written
    steps_per_epoch: int | None = None
    total_steps: int | None = None
    num_epochs: float | None = None
    total_train_batch_size: int | None = None
    estimate: TimeEstimate | None = None
    push_to: str | None = None
    trackers: list[str] = field(default_factory=list)
    inferred: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
