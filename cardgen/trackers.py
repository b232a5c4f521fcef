"""Experiment trackers (``training.report_to``): checked before a run, pointed at the output directory, linked.

The Trainer's own integrations do the reporting (TensorBoard, W&B, MLflow, Trackio, ...); cardgen only checks
that each named tracker is installed before anything runs, writes TensorBoard's event files into the run's output
directory (``tensorboard/<start time>/``, one folder per run as TensorBoard expects), and records where each
tracker keeps the run: a URL where it has one, else its local directory. The card links them.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any

from cardgen.config import RunConfig
from cardgen.config.sections import TRACKERS
from cardgen.errors import ConfigError

TRACKER_DIR = "tensorboard"  # inside the output directory


def check_trackers(cfg: RunConfig) -> None:
    """Every tracker in ``training.report_to`` is installed.

    Raises:
        ConfigError: Naming the first tracker whose package is missing and how to install it.
    """
    if cfg.training is None:
        return
    for name in cfg.training.report_to:
        modules = TRACKERS.get(name, (name,))
        if not any(importlib.util.find_spec(module) for module in modules):
            raise ConfigError(f"`training.report_to` names {name}, which is not installed",
                              f"pip install {modules[0]}, or remove {name} from training.report_to")


def configure(trainer: Any, out_dir: Path) -> None:
    """Point the Trainer's TensorBoard callback at ``out_dir/tensorboard/<start time>`` (unless
    ``TENSORBOARD_LOGGING_DIR`` says otherwise); by default it would write below the checkpoints, which a run
    removes at its end."""
    for callback in trainer.callback_handler.callbacks:
        if type(callback).__name__ == "TensorBoardCallback" and not os.environ.get("TENSORBOARD_LOGGING_DIR"):
            callback.logging_dir = str(out_dir / TRACKER_DIR / time.strftime("%Y%m%d-%H%M%S"))


def links(trainer: Any, out_dir: Path) -> dict[str, str]:
    """Tracker name -> the run's URL, or the local directory or store where the tracker keeps it."""
    found: dict[str, str] = {}
    for callback in trainer.callback_handler.callbacks:
        name = type(callback).__name__
        try:
            where = _where(name, callback, out_dir)
        except Exception:  # a tracker's own state is no reason to lose a finished run
            where = None
        if where:
            found[_TRACKER_OF.get(name, name)] = where
    return found


_TRACKER_OF = {"TensorBoardCallback": "tensorboard", "WandbCallback": "wandb", "MLflowCallback": "mlflow",
               "TrackioCallback": "trackio"}


def _where(name: str, callback: Any, out_dir: Path) -> str | None:
    if name == "TensorBoardCallback":
        directory = getattr(callback, "logging_dir", None)
        if not directory:
            return None
        path = Path(directory)
        try:
            return path.resolve().relative_to(out_dir.resolve()).as_posix()
        except ValueError:
            return str(path)
    if name == "WandbCallback":
        run = getattr(getattr(callback, "_wandb", None), "run", None)
        return getattr(run, "url", None)  # W&B keeps the run open after training (it finishes at exit)
    if name == "MLflowCallback":
        return _mlflow_location(callback)
    if name == "TrackioCallback":
        space = getattr(callback, "_static_space_id", None) or getattr(callback, "_space_id", None)
        return f"https://huggingface.co/spaces/{space}" if space else None
    return None


def _mlflow_location(callback: Any) -> str | None:
    mlflow = getattr(callback, "_ml_flow", None)
    run_id = getattr(callback, "_run_id", None)
    if mlflow is None:
        return None
    run = mlflow.last_active_run() if hasattr(mlflow, "last_active_run") else None
    run_id = run_id or (run.info.run_id if run is not None else None)
    uri = mlflow.get_tracking_uri()
    if not run_id:
        return None
    if str(uri).startswith(("http://", "https://")) and run is not None:
        return f"{str(uri).rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    return f"{uri} (run {run_id})"
