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
from cardgen.record import Comparison, EvaluationRecord, ModelRecord, TrainingRecord

if TYPE_CHECKING:
    from cardgen.config import RunConfig
    from cardgen.data import PreparedData
    from cardgen.models import LoadedModel


def compare_stage(cfg: RunConfig, task: Any, loaded: LoadedModel, data: PreparedData, *,
                  training: TrainingRecord | None, evaluation: EvaluationRecord | None, model: ModelRecord,
                  base_evaluation: EvaluationRecord | None,
                  progress: Progress) -> tuple[EvaluationRecord | None, Comparison | None]:
    """The run's comparison stage: the base model on the run's test examples, compared with the fine-tuned one.

    Nothing to do without training (the documented checkpoint is its own base). Classification evaluates the
    base here (zero-shot or a linear probe); the LM and QA tasks evaluated their base before training
    (``base_evaluation``), and this stage adds intervals and paired tests from both evaluations' per-document
    scores.

    Args:
        cfg: The run's config; ``cfg.model`` is the base checkpoint, ``cfg.compare`` the statistics settings.
        task: The task module.
        loaded: The fine-tuned model (already evaluated into ``evaluation``).
        data: The prepared splits; the probe is fitted on ``data.frames["train"]``.
        training: The run's training record (None: no training, nothing to compare).
        evaluation: The fine-tuned model's evaluation.
        model: The run's model record (which weights were newly initialised).
        base_evaluation: The base's evaluation made before training, for the tasks that make one.
        progress: Where to report progress.

    Returns:
        (the base model's evaluation, the comparison); either may be None.
    """
    if training is None or evaluation is None:
        return base_evaluation, None
    if task.NAME != "text-classification":
        return base_evaluation, _score_stage(cfg, task, base_evaluation, evaluation, progress)
    start = time.perf_counter()
    ev = evaluation
    frame = data.frames[ev.split]
    device = _device_of(loaded.model)
    method = base_method(auto_config(cfg), data.label_names, model.newly_initialized)
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
    c = cfg.compare
    comparison = classification_comparison(
        ev.labels, base_eval.predictions, ev.predictions, data.label_names, texts=example_texts(frame),
        split=ev.split, base_model=cfg.model.name_or_path, fine_tuned_model=_run_name(cfg), method=method,
        n_resamples=c.bootstrap_samples, confidence=c.confidence, seed=c.seed, probe=probe,
        max_length=data.record.max_length,
    )
    comparison.seconds = round(time.perf_counter() - start, 2)
    return base_eval, comparison


def _score_stage(cfg: RunConfig, task: Any, base: EvaluationRecord | None, ev: EvaluationRecord,
                 progress: Progress) -> Comparison | None:
    """LM and QA tasks: intervals and paired tests from the per-document scores both evaluations kept."""
    from cardgen.compare.documents import score_comparison, supports

    generation = base is not None and "generation" in base.extra and "generation" in ev.extra
    if base is None or not (supports(task.NAME) or generation):
        return None
    if not base.extra.get("meaningful", True):
        progress.note("the base model's head is newly initialised: its numbers are shown as not meaningful, "
                      "without intervals or a significance test")
        return None
    start = time.perf_counter()
    c = cfg.compare
    if generation:
        from cardgen.compare.generation import generation_comparison

        comparison = generation_comparison(task.NAME, base, ev, base_model=cfg.model.name_or_path,
                                           fine_tuned_model=_run_name(cfg), n_resamples=c.bootstrap_samples,
                                           confidence=c.confidence, seed=c.seed,
                                           num_examples=cfg.generation.examples)
    else:
        comparison = score_comparison(task.NAME, base, ev, base_model=cfg.model.name_or_path,
                                      fine_tuned_model=_run_name(cfg), n_resamples=c.bootstrap_samples,
                                      confidence=c.confidence, seed=c.seed)
    comparison.seconds = round(time.perf_counter() - start, 2)
    return comparison


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def _run_name(cfg: RunConfig) -> str:
    return str(cfg.card.model_name or Path(cfg.output.dir).name)
