"""``training.seeds``: train the same config once per seed and keep the seed that did best on validation.

Each seed starts from a freshly loaded base model (its new head initialised under that seed), trains with the
run's own Trainer setup and is evaluated on the run's evaluation split, so the card can show each seed's row and
the spread of the test metrics. The model kept, compared and benchmarked is the seed best by the validation
metric that also picks epochs: choosing it by its test score would make the test number optimistic.

Each finished seed is written to ``checkpoints/seeds/seed-<n>.json`` and the best model so far to
``checkpoints/seeds/best``, so ``--resume`` after a kill skips the finished seeds and continues the interrupted
one from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from cardgen.config import RunConfig
from cardgen.console import Progress
from cardgen.errors import ConfigError, OutputError
from cardgen.experiments.kept import fresh_model, keep, kept_info, load_kept, work_dir
from cardgen.experiments.stage import Trained
from cardgen.record import ExperimentsRecord, SeedRun, SeedsRecord, from_dict, to_dict
from cardgen.stats.spread import spread

SEEDS_DIR = "seeds"
SPREAD_SKIP = ("loss",)  # the evaluation loss is shown per seed but not summarised


def seed_config(cfg: RunConfig, seed: int) -> RunConfig:
    """``cfg`` for one seed's training: ``training.seed`` set, the seed list kept for the record."""
    assert cfg.training is not None
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, seed=seed))


def better(value: float | None, best: float | None, greater: bool) -> bool:
    """Whether ``value`` beats ``best`` (ties keep the earlier one)."""
    if value is None:
        return False
    return best is None or (value > best if greater else value < best)


class SeedTrainings:
    """The training stage of ``training.seeds`` (see the module docstring)."""

    def check_resume(self, cfg: RunConfig, out_dir: Path, resume: bool) -> None:
        if not resume:
            return
        if cfg.output.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other",
                              "--resume continues the run in the output directory, --overwrite replaces it: pick one")
        root = work_dir(out_dir, SEEDS_DIR)
        if not root.is_dir() or not any(root.iterdir()):
            raise OutputError(f"nothing to resume: no seed results or checkpoints in {root}",
                              "run without --resume (with --overwrite to replace what is in the output directory)")

    def __call__(self, cfg: RunConfig, task: Any, loaded: Any, data: Any, out_dir: Path, progress: Progress,
                 resume: bool) -> Trained:
        return train_seeds(cfg, task, loaded, data, out_dir, progress, resume)


def train_seeds(cfg: RunConfig, task: Any, loaded: Any, data: Any, out_dir: Path, progress: Progress,
                resume: bool, reuse_loaded: bool = True) -> Trained:
    """Train once per seed of ``cfg.training.seeds``; ``loaded.model`` ends as the seed best on validation.

    ``reuse_loaded``: ``loaded.model`` is the base as the pipeline loaded it under ``cfg.training.seed`` and
    untrained, so that seed's training may start from it instead of loading the base again.

    Returns:
        The kept seed's TrainingRecord, whether a seed was interrupted (the record then holds the seeds
        finished so far), and the seeds' record.
    """
    from cardgen.distributed import is_main_process
    from cardgen.train import last_checkpoint, selection_metric, train

    assert cfg.training is not None and cfg.training.seeds
    seeds = list(cfg.training.seeds)
    metric, greater = selection_metric(cfg, task)
    root = work_dir(out_dir, SEEDS_DIR)
    if not resume:
        shutil.rmtree(root, ignore_errors=True)  # what an earlier run left (it is replaced, --overwrite)
    main = is_main_process()
    split = cfg.evaluation.split
    runs: list[SeedRun] = []
    kept = kept_info(root / "best")
    base_untouched = reuse_loaded  # the run's loaded model has not been trained: the first seed of training.seed uses it
    for i, seed in enumerate(seeds):
        done = root / f"seed-{seed}.json"
        if resume and done.is_file():
            runs.append(from_dict(SeedRun, json.loads(done.read_text(encoding="utf-8"))))
            continue
        progress.stage(f"Training seed {seed} ({i + 1} of {len(seeds)})")
        cfg_s = seed_config(cfg, seed)
        if base_untouched and seed == cfg.training.seed:
            one = loaded  # loaded under this seed by the pipeline, untrained
        else:
            one = fresh_model(cfg_s, task, loaded, data.label_names)
        base_untouched = False
        seed_dir = root / f"seed-{seed}"
        training, interrupted = train(cfg_s, task, one, data, seed_dir, progress,
                                      resume=resume and last_checkpoint(seed_dir) is not None)
        if interrupted:
            loaded.model = one.model
            return Trained(training=training, interrupted=True,
                           experiments=ExperimentsRecord(seeds=seeds_record(seeds, metric, greater, split, runs,
                                                                            None, cfg.compare.confidence)))
        if not main:
            continue  # only the main process evaluates and keeps
        ev = task.evaluate(one, data.frames[split], cfg_s, data.label_names, f"seed {seed}", split, progress)
        run = SeedRun(seed=seed, best_epoch=training.best_epoch, best_step=training.best_step,
                      validation_metric=training.best_metric, test_metrics=dict(ev.metrics),
                      train_loss=training.train_loss, train_runtime_s=training.train_runtime_s,
                      resumed_from=training.resumed_from)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in ev.metrics.items() if k in ("accuracy", "perplexity", "f1"))
        progress.note(f"seed {seed}: best validation {metric} {training.best_metric}; {split}: {shown}")
        if kept is None or better(training.best_metric, kept[1].best_metric, greater):
            keep(one, root / "best", {"seed": seed}, training)
            kept = ({"seed": seed}, training)
        from cardgen.files import atomic_write_text

        atomic_write_text(done, json.dumps(to_dict(run), indent=1) + "\n")
        shutil.rmtree(seed_dir, ignore_errors=True)  # this seed's checkpoints: its result is saved
        runs.append(run)
    if not main:
        return Trained(training=training, interrupted=False)
    assert kept is not None
    info, kept_training = kept
    loaded.model = load_kept(loaded, root / "best")
    record = seeds_record(seeds, metric, greater, split, runs, int(info["seed"]), cfg.compare.confidence)
    return Trained(training=kept_training, interrupted=False, experiments=ExperimentsRecord(seeds=record))


def seeds_record(seeds: list[int], metric: str, greater: bool, split: str, runs: list[SeedRun],
                 kept_seed: int | None, confidence: float) -> SeedsRecord:
    """The seeds' record: every seed's row and, over the finished ones, each test metric's spread."""
    keys = [k for k in (runs[0].test_metrics if runs else {}) if k not in SPREAD_SKIP]
    test = {k: spread([r.test_metrics[k] for r in runs if k in r.test_metrics], confidence) for k in keys}
    validation_values = [r.validation_metric for r in runs if r.validation_metric is not None]
    return SeedsRecord(seeds=seeds, metric=metric, greater_is_better=greater, split=split, runs=runs,
                       kept_seed=kept_seed, test=test,
                       validation=spread(validation_values, confidence) if validation_values else None)

