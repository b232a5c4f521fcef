"""The model an experiment keeps: a fresh model per training, the best one saved as a whole directory with the
TrainingRecord that describes it, and loaded back into the run at the end.

The kept directory lives under the run's ``checkpoints/`` folder, so the run's output writer removes it with the
checkpoints once the kept model is saved in the output directory, and ``--resume`` finds it after a kill.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from cardgen.config import RunConfig
from cardgen.record import TrainingRecord, from_dict, to_dict

KEPT_FILE = "kept.json"  # beside the weights: which seed or trial they are, and its TrainingRecord


def work_dir(out_dir: Path, name: str) -> Path:
    """``out_dir/checkpoints/<name>``: an experiment's working folder (trainings' checkpoints, the kept model)."""
    from cardgen.outputs import CHECKPOINTS

    return out_dir / CHECKPOINTS / name


def fresh_model(cfg: RunConfig, task: Any, loaded: Any, label_names: list[str]) -> Any:
    """A newly loaded base model for one training, seeded by ``cfg.training.seed`` (a new head's initial
    weights depend on it, as in a single run), sharing the run's tokenizer."""
    from transformers import set_seed

    assert cfg.training is not None
    set_seed(cfg.training.seed)
    fresh = task.load_model(cfg, label_names, tokenizer=loaded.tokenizer)
    one = dataclasses.replace(loaded, model=fresh.model, newly_initialized=fresh.newly_initialized)
    if cfg.peft is not None:  # a new LoRA adapter on the fresh base, as the run's first model got
        from cardgen.adapters import apply_adapter

        apply_adapter(cfg, one)
    return one


def keep(loaded: Any, directory: Path, info: dict[str, Any], training: TrainingRecord) -> None:
    """Save ``loaded``'s model and tokenizer as the kept model in ``directory``, replacing what was there as a
    whole: written beside it, then renamed into place, so a kill leaves either the old or the new one."""
    from cardgen.files import atomic_write_text
    from cardgen.outputs import save_pretrained

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(directory.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    save_pretrained(loaded, staging)
    atomic_write_text(staging / KEPT_FILE, json.dumps({**info, "training": to_dict(training)}, indent=1) + "\n")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    os.replace(staging, directory)
    shutil.rmtree(old, ignore_errors=True)


def kept_info(directory: Path) -> tuple[dict[str, Any], TrainingRecord] | None:
    """(what :func:`keep` recorded, the kept model's TrainingRecord), or None when nothing is kept there.

    A kill between the two renames of :func:`keep` leaves only ``<name>.old``: that one is still whole.
    """
    old = directory.with_name(directory.name + ".old")
    if not directory.is_dir() and old.is_dir():
        os.replace(old, directory)
    try:
        data = json.loads((directory / KEPT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    training = from_dict(TrainingRecord, data.pop("training"))
    return data, training


def load_kept(loaded: Any, directory: Path) -> Any:
    """The kept model from ``directory``, of the same class and dtype as the run's model, in eval mode. A kept
    LoRA adapter goes onto the run's base model, its own adapter taken off first (the base weights never train)."""
    from cardgen.adapters import is_peft_model

    if is_peft_model(loaded.model):
        from peft import PeftModel

        model = PeftModel.from_pretrained(loaded.model.unload(), str(directory), is_trainable=False)
        model.eval()
        return model
    model = type(loaded.model).from_pretrained(str(directory), dtype=loaded.model.dtype)
    model.eval()
    return model
