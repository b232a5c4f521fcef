"""The one TrainingRecord builder: what a finished ``Trainer.train()`` did, from its TrainingArguments and
TrainerState. cardgen's training stage and ``CardgenCallback`` both call :func:`training_record`."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
from collections.abc import Iterator
from typing import Any

from cardgen.record import EpochRow, LogPoint, TrainingRecord

# Keys of Trainer log entries that are bookkeeping, not metrics.
LOG_SKIP = {"epoch", "step", "total_flos", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second"}


def jsonable(value: Any) -> Any:
    """TrainingArguments values as JSON-safe data (enums by value)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def effective_arguments(args: Any) -> tuple[dict[str, Any], list[str]]:
    """Every TrainingArguments field value, and the names of those that differ from transformers' defaults."""
    from transformers import TrainingArguments

    values = {f.name: jsonable(getattr(args, f.name)) for f in dataclasses.fields(args) if f.init}
    values = {k: v for k, v in values.items() if not k.startswith("_") and "token" not in k}
    # Defaults of the same class (a task may train with Seq2SeqTrainingArguments, which has fields of its own).
    defaults = (type(args) if isinstance(args, TrainingArguments) else TrainingArguments)(output_dir=args.output_dir)
    non_default = [k for k, v in values.items() if k != "output_dir"
                   and v != jsonable(getattr(defaults, k, None))]
    return values, non_default


def trainer_card_hyperparameters(args: Any) -> dict[str, Any]:
    """The hyperparameter list of transformers' own Trainer card, with the same names, readable values."""
    hp: dict[str, Any] = {
        "learning_rate": args.learning_rate,
        "train_batch_size": args.per_device_train_batch_size,
        "eval_batch_size": args.per_device_eval_batch_size,
        "seed": args.seed,
    }
    world = max(1, args.world_size)
    if world > 1:
        hp["distributed_type"] = "multi-GPU" if "cuda" in str(args.device) else "multi-process"
        hp["num_devices"] = world
    if args.gradient_accumulation_steps > 1:
        hp["gradient_accumulation_steps"] = args.gradient_accumulation_steps
    total_train = args.per_device_train_batch_size * world * args.gradient_accumulation_steps
    if total_train != args.per_device_train_batch_size:
        hp["total_train_batch_size"] = total_train
    total_eval = args.per_device_eval_batch_size * world
    if total_eval != args.per_device_eval_batch_size:
        hp["total_eval_batch_size"] = total_eval
    optim = jsonable(args.optim)
    extra = args.optim_args or "no additional optimizer arguments"
    if "adam" in str(optim).lower():
        hp["optimizer"] = (f"{optim} with betas=({args.adam_beta1}, {args.adam_beta2}), "
                           f"epsilon={args.adam_epsilon} and {extra}")
    else:
        hp["optimizer"] = f"{optim} ({extra})"
    hp["lr_scheduler_type"] = jsonable(args.lr_scheduler_type)
    if args.warmup_steps:
        hp["lr_scheduler_warmup_steps"] = args.warmup_steps
    if args.max_steps != -1:
        hp["training_steps"] = args.max_steps
    else:
        hp["num_epochs"] = args.num_train_epochs
    if args.fp16 or args.bf16:
        hp["mixed_precision_training"] = f"Native AMP ({'fp16' if args.fp16 else 'bf16'})"
    if args.label_smoothing_factor:
        hp["label_smoothing_factor"] = args.label_smoothing_factor
    return hp


def epoch_rows(log_history: list[dict[str, Any]]) -> list[EpochRow]:
    """Rows like the Trainer card's table, one per evaluation; the training loss of a row is the mean of the
    losses logged since the previous evaluation (the epoch's loss when logging is per step; the last one seen
    when nothing was logged in between)."""
    rows = []
    training_loss: float | None = None
    window: list[float] = []
    for entry in log_history:
        if "loss" in entry:
            training_loss = float(entry["loss"])
            window.append(training_loss)
        if "eval_loss" in entry:
            metrics = {k.removeprefix("eval_"): float(v) for k, v in entry.items()
                       if k.startswith("eval_") and k not in LOG_SKIP and k != "eval_loss"
                       and isinstance(v, (int, float))}
            loss = sum(window) / len(window) if window else training_loss
            rows.append(EpochRow(epoch=round(float(entry.get("epoch", 0.0)), 4), step=int(entry.get("step", 0)),
                                 training_loss=loss, validation_loss=float(entry["eval_loss"]),
                                 metrics=metrics))
            window = []
    return rows


def curve_points(log_history: list[dict[str, Any]]) -> list[LogPoint]:
    """Every training log entry (loss, learning rate, gradient norm) for the training-curve plot."""
    points = []
    for entry in log_history:
        if "loss" not in entry or "eval_loss" in entry or not isinstance(entry["loss"], (int, float)):
            continue
        lr, norm = entry.get("learning_rate"), entry.get("grad_norm")
        points.append(LogPoint(step=int(entry.get("step", 0)), epoch=round(float(entry.get("epoch", 0.0)), 4),
                               loss=float(entry["loss"]),
                               learning_rate=float(lr) if isinstance(lr, (int, float)) else None,
                               grad_norm=float(norm) if isinstance(norm, (int, float)) and math.isfinite(norm)
                               else None))
    return points


def find_best(rows: list[EpochRow], metric: str, greater: bool) -> EpochRow | None:
    """The row with the best value of ``metric`` (the earliest on ties, as the Trainer keeps it)."""
    def value(r: EpochRow) -> float | None:
        return r.validation_loss if metric == "loss" else r.metrics.get(metric)

    scored = [r for r in rows if value(r) is not None]
    if not scored:
        return None
    best = scored[0]
    for r in scored[1:]:
        v, b = value(r), value(best)
        assert v is not None and b is not None
        if (v > b) if greater else (v < b):
            best = r
    return best


def overfitting(rows: list[EpochRow], best: EpochRow | None) -> tuple[bool, str | None]:
    """Flag validation loss that keeps rising after the best epoch (at least two rises in a row)."""
    if best is None:
        return False, None
    after = [r for r in rows if r.step >= best.step and r.validation_loss is not None]
    losses = [r.validation_loss for r in after]
    if len(losses) >= 3 and all(b > a for a, b in zip(losses, losses[1:], strict=False)):  # type: ignore[operator]
        return True, (f"validation loss rose for {len(losses) - 1} evaluations after the best epoch "
                      f"({losses[0]:.4f} at epoch {best.epoch:g} to {losses[-1]:.4f} at epoch {after[-1].epoch:g}); "
                      "the best epoch's weights were kept")
    return False, None


def training_record(args: Any, state: Any, *, metric: str | None = None, greater: bool | None = None,
                    stopped_early: bool | None = None, resumed_from: str | None = None) -> TrainingRecord:
    """The TrainingRecord of a finished ``Trainer.train()``, from its TrainingArguments and TrainerState.

    The one builder: cardgen's training stage and CardgenCallback both call it.

    Args:
        args: The TrainingArguments.
        state: The TrainerState after training (its log history holds the per-epoch rows and the final summary).
        metric: The metric that picked the best epoch (default: ``args.metric_for_best_model``, else the loss).
        greater: Whether larger is better for ``metric`` (default: ``args.greater_is_better``, else by name).
        stopped_early: Whether training ended before its planned steps because of early stopping (default: it
            ended before ``state.max_steps``).
        resumed_from: The checkpoint training resumed from.
    """
    metric = metric or (args.metric_for_best_model or "loss").removeprefix("eval_")
    if greater is None:
        greater = args.greater_is_better if args.greater_is_better is not None else metric not in ("loss", "perplexity")
    rows = epoch_rows(state.log_history)
    best = find_best(rows, metric, greater)
    over, note = overfitting(rows, best)
    with _accelerate_state_kept():
        values, non_default = effective_arguments(args)
    world = max(1, args.world_size)
    final: dict[str, Any] = next((e for e in reversed(state.log_history) if "train_runtime" in e), {})
    if stopped_early is None:
        stopped_early = bool(state.max_steps) and state.global_step < state.max_steps
    return TrainingRecord(
        arguments=values,
        non_default=non_default,
        hyperparameters={k: jsonable(v) for k, v in trainer_card_hyperparameters(args).items()},
        epochs=rows,
        metric_for_best_model=metric,
        greater_is_better=bool(greater),
        best_epoch=best.epoch if best else None,
        best_step=best.step if best else None,
        best_metric=(best.validation_loss if metric == "loss" else best.metrics.get(metric)) if best else None,
        overfitting=over,
        overfitting_note=note,
        train_loss=float(final["train_loss"]) if final.get("train_loss") is not None else None,
        train_runtime_s=round(float(final.get("train_runtime", 0.0)), 2),
        train_samples_per_second=final.get("train_samples_per_second"),
        total_flos=float(state.total_flos or 0.0),
        global_step=int(state.global_step),
        num_devices=world,
        total_train_batch_size=args.per_device_train_batch_size * world * args.gradient_accumulation_steps,
        total_eval_batch_size=args.per_device_eval_batch_size * world,
        stopped_early=stopped_early,
        resumed_from=resumed_from,
        curve=curve_points(state.log_history),
    )


@contextlib.contextmanager
def _accelerate_state_kept() -> Iterator[None]:
    """Keep accelerate's process-wide state across the block.

    ``effective_arguments`` builds a default TrainingArguments to compare against, and building one resets
    accelerate's shared state; the user's Trainer is still alive (``trainer.evaluate`` after ``train``) and
    needs it.
    """
    from accelerate.state import AcceleratorState, GradientState, PartialState

    saved = [(cls, dict(cls._shared_state)) for cls in (PartialState, AcceleratorState, GradientState)]
    try:
        yield
    finally:
        for cls, state in saved:
            cls._shared_state.clear()
            cls._shared_state.update(state)
