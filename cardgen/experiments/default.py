"""Which training stage ``cardgen run`` uses for a config (``cardgen sweep`` passes its own)."""

from __future__ import annotations

from cardgen.config import RunConfig
from cardgen.experiments.stage import SingleTraining, TrainingStage


def training_stage(cfg: RunConfig) -> TrainingStage:
    """The stage ``cardgen run`` uses for ``cfg``: one training per seed of ``training.seeds``, else one."""
    if cfg.training is not None and cfg.training.seeds:
        from cardgen.experiments.seeds import SeedTrainings

        return SeedTrainings()
    return SingleTraining()
