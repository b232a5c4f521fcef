"""The run's comparison stage: the base model on the run's test examples, then intervals and paired tests.

Returns the base evaluation and the Comparison; the pipeline puts them into the run record.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardgen.compare.baseline import base_method, linear_probe, zero_shot
from cardgen.compare.classification import classification_comparison, example_texts
from cardgen.console import Progress
from cardgen.models import auto_config
from cardgen.record import (
    RunRecord,
)

if TYPE_CHECKING:

    from cardgen.config import RunConfig
    from cardgen.data import PreparedData
    from cardgen.models import LoadedModel


def compare_stage(cfg: RunConfig, task: Any, loaded: LoadedModel, data: PreparedData, record: RunRecord,
                  progress: Progress) -> None:
    """The run's comparison stage: evaluate the base model on the run's test examples and compare.

    Fills ``record.base_evaluation`` and ``record.comparison``. Does nothing when there was no training (the
    documented checkpoint is its own base). For the LM and QA tasks the base was evaluated by the task before
    training; this stage adds intervals and paired tests from both evaluations' per-document scores.

    Args:
        cfg: The run's config; ``cfg.model`` is the base checkpoint, ``cfg.compare`` the statistics settings.
        task: The task module.
        loaded: The fine-tuned model (already evaluated into ``record.evaluation``).
        data: The prepared splits; the probe is fitted on ``data.frames["train"]``.
        record: The run record to extend.
        progress: Where to report progress.
    """
    if record.training is None or record.evaluation is None:
        return
    if task.NAME != "text-classification":
        _score_stage(cfg, task, record, progress)
        return
    start = time.perf_counter()
    ev = record.evaluation
    frame = data.frames[ev.split]
    device = _device_of(loaded.model)
    method = base_method(auto_config(cfg), data.label_names, record.model.newly_initialized)
    probe = None
    base_eval = None
    if method == "zero-shot":
        base_eval = zero_shot(cfg, task, loaded.tokenizer, frame, data.label_names, ev.split, device, progress)
    if base_eval is None:
        method = "linear-probe"
        base_eval, probe = linear_probe(
            cfg.model, cfg, loaded.tokenizer, data.frames.get("train"), frame, data.label_names, split=ev.split,
            max_train=cfg.compare.probe_max_train, seed=cfg.compare.seed, batch_size=cfg.evaluation.batch_size,
            device=device, progress=progress,
        )
    record.base_evaluation = base_eval
    c = cfg.compare
    record.comparison = classification_comparison(
        ev.labels, base_eval.predictions, ev.predictions, data.label_names, texts=example_texts(frame), split=ev.split,
        base_model=cfg.model.name_or_path, fine_tuned_model=_run_name(cfg), method=method,
        n_resamples=c.bootstrap_samples, confidence=c.confidence, seed=c.seed, probe=probe,
        max_length=data.record.max_length,
    )
    record.comparison.seconds = round(time.perf_counter() - start, 2)


def _score_stage(cfg: RunConfig, task: Any, record: RunRecord, progress: Progress) -> None:
    """LM and QA tasks: intervals and paired tests from the per-document scores both evaluations kept."""
    from cardgen.compare.documents import score_comparison, supports

    base, ev = record.base_evaluation, record.evaluation
    if base is None or ev is None or not supports(task.NAME):
        return
    if not base.extra.get("meaningful", True):
        progress.note("the base model's head is newly initialised: its numbers are shown as not meaningful, "
                      "without intervals or a significance test")
        return
    start = time.perf_counter()
    c = cfg.compare
    record.comparison = score_comparison(task.NAME, base, ev, base_model=cfg.model.name_or_path,
                                         fine_tuned_model=_run_name(cfg), n_resamples=c.bootstrap_samples,
                                         confidence=c.confidence, seed=c.seed)
    record.comparison.seconds = round(time.perf_counter() - start, 2)


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def _run_name(cfg: RunConfig) -> str:
    return str(cfg.card.model_name or Path(cfg.output.dir).name)
