"""The run's comparison stage: the base model on the run's test examples, then intervals and paired tests.

Returns the base evaluation and the Comparison; the pipeline puts them into the run record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardgen.adapters import BASE_BY_DISABLING, adapter_disabled, backbone, is_peft_model
from cardgen.compare.baseline import base_method, linear_probe, zero_shot
from cardgen.compare.classification import classification_comparison, example_texts
from cardgen.console import Progress
from cardgen.models import auto_config
from cardgen.record import AdapterRecord, Comparison, EvaluationRecord, ModelRecord, TrainingRecord

if TYPE_CHECKING:
    from cardgen.config import RunConfig
    from cardgen.data import PreparedData
    from cardgen.models import LoadedModel


def compare_stage(cfg: RunConfig, task: Any, loaded: LoadedModel, data: PreparedData, *,
                  training: TrainingRecord | None, evaluation: EvaluationRecord | None, model: ModelRecord,
                  base_evaluation: EvaluationRecord | None,
                  progress: Progress,
                  adapter: AdapterRecord | None = None) -> tuple[EvaluationRecord | None, Comparison | None]:
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
        adapter: The run's LoRA adapter: the base is then the same in-memory model with the adapter disabled
            (no second load), also without training (a saved adapter documented with --no-train).

    Returns:
        (the base model's evaluation, the comparison); either may be None.
    """
    in_memory = adapter is not None and is_peft_model(loaded.model)
    base_name = adapter.base_model if in_memory and adapter is not None else cfg.model.name_or_path
    if evaluation is None or (training is None and not in_memory):
        return base_evaluation, None
    if task.NAME != "text-classification":
        if in_memory and base_evaluation is None and hasattr(task, "evaluate_base"):
            assert adapter is not None
            base_evaluation = _lm_base_disabled(cfg, task, loaded, data, evaluation.split, adapter, progress)
        return base_evaluation, _score_stage(cfg, task, base_evaluation, evaluation, progress, base_name)
    start = time.perf_counter()
    ev = evaluation
    frame = data.frames[ev.split]
    device = _device_of(loaded.model)
    fresh = adapter.base_newly_initialized if in_memory and adapter is not None else model.newly_initialized
    method = base_method(auto_config(cfg), data.label_names, fresh)
    probe = None
    base_eval = None
    disabled = adapter_disabled(loaded.model) if in_memory else contextlib.nullcontext()
    with disabled:
        if method == "zero-shot":
            base_eval = (_zero_shot_disabled(cfg, task, loaded, frame, data.label_names, ev.split, progress)
                         if in_memory else
                         zero_shot(cfg, task, loaded.tokenizer, frame, data.label_names, ev.split, device, progress))
        if base_eval is None:
            method = "linear-probe"
            base_eval, probe = linear_probe(
                cfg.model, cfg, loaded.tokenizer, data.frames.get("train"), frame, data.label_names, split=ev.split,
                max_train=cfg.compare.probe_max_train, seed=cfg.compare.seed, batch_size=cfg.evaluation.batch_size,
                device=device, progress=progress, encoder=backbone(loaded.model) if in_memory else None,
            )
    if in_memory:
        base_eval.extra["base_via"] = BASE_BY_DISABLING
    c = cfg.compare
    comparison = classification_comparison(
        ev.labels, base_eval.predictions, ev.predictions, data.label_names, texts=example_texts(frame),
        split=ev.split, base_model=base_name, fine_tuned_model=_run_name(cfg), method=method,
        n_resamples=c.bootstrap_samples, confidence=c.confidence, seed=c.seed, n_permutations=c.permutations,
        probe=probe, max_length=data.record.max_length,
    )
    comparison.seconds = round(time.perf_counter() - start, 2)
    return base_eval, comparison


def _zero_shot_disabled(cfg: RunConfig, task: Any, loaded: LoadedModel, frame: Any, label_names: list[str],
                        split: str, progress: Progress) -> EvaluationRecord:
    """The base classifier (its head kept) as the adapted model computes it with the adapter disabled."""
    evaluation: EvaluationRecord = task.evaluate(loaded, frame, cfg, label_names, "base", split, progress)
    evaluation.method = "zero-shot"
    return evaluation


def _lm_base_disabled(cfg: RunConfig, task: Any, loaded: LoadedModel, data: PreparedData, split: str,
                      adapter: AdapterRecord, progress: Progress) -> EvaluationRecord:
    """LM and QA tasks: the base evaluated by the task exactly as the fine-tuned model was, on the same in-memory
    model with the adapter disabled; what was fresh in the base decides whether its numbers are meaningful."""
    base = dataclasses.replace(loaded, newly_initialized=list(adapter.base_newly_initialized))
    with adapter_disabled(loaded.model):
        evaluation: EvaluationRecord = task.evaluate_base(base, data.frames[split], cfg, data.label_names, split,
                                                          progress)
    evaluation.extra["base_via"] = BASE_BY_DISABLING
    return evaluation


def _score_stage(cfg: RunConfig, task: Any, base: EvaluationRecord | None, ev: EvaluationRecord,
                 progress: Progress, base_name: str) -> Comparison | None:
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

        comparison = generation_comparison(task.NAME, base, ev, base_model=base_name,
                                           fine_tuned_model=_run_name(cfg), n_resamples=c.bootstrap_samples,
                                           confidence=c.confidence, seed=c.seed, n_permutations=c.permutations,
                                           num_examples=cfg.generation.examples)
    else:
        comparison = score_comparison(task.NAME, base, ev, base_model=base_name,
                                      fine_tuned_model=_run_name(cfg), n_resamples=c.bootstrap_samples,
                                      confidence=c.confidence, seed=c.seed, n_permutations=c.permutations)
    comparison.seconds = round(time.perf_counter() - start, 2)
    return comparison


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def _run_name(cfg: RunConfig) -> str:
    return str(cfg.card.model_name or Path(cfg.output.dir).name)
