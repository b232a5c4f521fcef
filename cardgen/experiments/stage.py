"""The run's training stage as the pipeline calls it: one training, one per seed, or a whole sweep.

``pipeline.run`` loads the data and the base model, runs a :class:`TrainingStage`, and then evaluates, compares,
benchmarks and documents the model the stage kept. A stage returns :class:`Trained`: the kept model's
TrainingRecord (the card's per-epoch table), whether it was interrupted, and the experiments behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cardgen.config import RunConfig
from cardgen.console import Progress
from cardgen.record import ExperimentsRecord, TrainingRecord


@dataclass
class Trained:
    """What a training stage hands back; ``loaded.model`` holds the kept model by then."""

    training: TrainingRecord
    interrupted: bool
    experiments: ExperimentsRecord | None = None
    cfg: RunConfig | None = None  # the config the kept model was trained with, when not the run's (a sweep)
    data: Any = None  # the data it was trained with, when prepared anew (a sweep over data keys)


class TrainingStage(Protocol):
    """A training stage: checks ``--resume`` before anything is written, then trains."""

    def check_resume(self, cfg: RunConfig, out_dir: Path, resume: bool) -> None: ...

    def __call__(self, cfg: RunConfig, task: Any, loaded: Any, data: Any, out_dir: Path, progress: Progress,
                 resume: bool) -> Trained: ...


class SingleTraining:
    """One training with ``training.seed`` (the plain ``cardgen run``)."""

    def check_resume(self, cfg: RunConfig, out_dir: Path, resume: bool) -> None:
        from cardgen.outputs import check_resume

        check_resume(cfg, out_dir, resume)

    def __call__(self, cfg: RunConfig, task: Any, loaded: Any, data: Any, out_dir: Path, progress: Progress,
                 resume: bool) -> Trained:
        from cardgen.train import train

        training, interrupted = train(cfg, task, loaded, data, out_dir, progress, resume)
        return Trained(training=training, interrupted=interrupted)

