"""Training with transformers.Trainer: arguments from the config, progress and clean stops on signals, epoch-seeded
length-grouped batches; the TrainingRecord comes from ``training_record``."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from cardgen import trackers
from cardgen.config import RunConfig, TrainingConfig
from cardgen.config.sections import LOG_POINTS
from cardgen.console import NullProgress, Progress
from cardgen.errors import ConfigError
from cardgen.files import checkpoint_write_error
from cardgen.record import TrainingRecord
from cardgen.training_record import LOG_SKIP, training_record

CHECKPOINT_DIR = "checkpoints"


def metric_key(cfg: RunConfig, default: str) -> str:
    """The metric that picks the best epoch (without the eval_ prefix)."""
    assert cfg.training is not None
    name = cfg.training.metric_for_best_model or default
    return name.removeprefix("eval_")


def selection_metric(cfg: RunConfig, task: Any) -> tuple[str, bool]:
    """(the metric that picks the best epoch, whether greater is better): what train() and a sweep optimise."""
    metric = metric_key(cfg, task.DEFAULT_METRIC)
    return metric, task.GREATER_IS_BETTER if metric == task.DEFAULT_METRIC else metric not in ("loss", "perplexity")


def training_arguments(cfg: RunConfig, out_dir: Path, metric: str, greater_is_better: bool, task: Any = None) -> Any:
    """TrainingArguments from the config; extra_args pass straight through and are checked by transformers.

    A task may train with another arguments class and add settings (``task.training_arguments(cfg)``, e.g. the
    seq2seq task's ``Seq2SeqTrainingArguments`` with ``predict_with_generate``); extra_args still win.
    """
    from transformers import TrainingArguments

    args_class: Any = TrainingArguments
    task_kwargs: dict[str, Any] = {}
    if task is not None and hasattr(task, "training_arguments"):
        args_class, task_kwargs = task.training_arguments(cfg)

    t = cfg.training
    assert t is not None
    kwargs: dict[str, Any] = {
        "output_dir": str(out_dir / CHECKPOINT_DIR),
        "learning_rate": t.learning_rate,
        "num_train_epochs": t.num_epochs,
        "max_steps": t.max_steps,
        "per_device_train_batch_size": t.train_batch_size,
        "per_device_eval_batch_size": t.eval_batch_size,
        "seed": t.seed,
        "data_seed": t.seed,
        "weight_decay": t.weight_decay,
        "warmup_steps": t.warmup,
        "lr_scheduler_type": t.lr_scheduler,
        "optim": t.optimizer,
        "adam_beta1": t.adam_beta1,
        "adam_beta2": t.adam_beta2,
        "adam_epsilon": t.adam_epsilon,
        "max_grad_norm": t.max_grad_norm,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "fp16": t.mixed_precision == "fp16",
        "bf16": t.mixed_precision == "bf16",
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        # A few dozen training-loss points per run (a ratio of the total steps), so the curve shows steps.
        "logging_strategy": "steps",
        "logging_steps": t.logging_steps or 1 / LOG_POINTS,
        "load_best_model_at_end": True,
        "metric_for_best_model": metric,
        "greater_is_better": greater_is_better,
        "save_total_limit": t.save_total_limit,
        "report_to": list(t.report_to) or "none",
        "disable_tqdm": True,
        # Batches of similar length waste little compute on padding: faster than random batches.
        "train_sampling_strategy": "group_by_length",
        "save_only_model": False,
        "dataloader_pin_memory": _cuda_available(),
    }
    if t.max_steps > 0:
        kwargs.update(eval_strategy="steps", save_strategy="steps", logging_strategy="steps",
                      eval_steps=max(1, t.max_steps // max(1, int(t.num_epochs))))
        kwargs["save_steps"] = kwargs["eval_steps"]
        kwargs["logging_steps"] = t.logging_steps or 1 / LOG_POINTS
    if t.report_to:  # the trackers' run name (the Trainer's default is the checkpoint folder)
        kwargs["run_name"] = cfg.card.model_name or out_dir.name
    kwargs.update(precision_arguments(t.mixed_precision))
    if t.gradient_checkpointing:  # transformers 5 calls it activation checkpointing (the old name warns)
        fields = args_class.__dataclass_fields__
        kwargs["activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"] = True
    kwargs.update(task_kwargs)
    kwargs.update(t.extra_args)
    try:
        return args_class(**kwargs)
    except TypeError as exc:
        bad = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
        raise ConfigError(f"`training.extra_args.{bad}` is not a TrainingArguments field",
                          "see transformers' TrainingArguments for valid names") from exc
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"training settings rejected by transformers: {first}",
                          "fix the training section or training.extra_args") from exc


def precision_arguments(mixed_precision: str) -> dict[str, Any]:
    """TrainingArguments for ``training.mixed_precision`` on this machine: bf16 autocast runs on a GPU, or on a
    CPU that computes bf16 natively (the Trainer must then be told to stay on the CPU); fp16 needs a GPU.

    Raises:
        ConfigError: A precision this machine cannot train in.
    """
    if mixed_precision == "no" or _cuda_available():
        return {}
    if mixed_precision == "fp16":
        raise ConfigError("`training.mixed_precision` fp16 needs a CUDA GPU, and this machine has none",
                          "use bf16 (on a CPU with native bf16) or no")
    from cardgen.environment import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        raise ConfigError("`training.mixed_precision` bf16: this CPU has no native bf16 (AVX512-BF16, AMX or Arm "
                          "bf16), so it would be emulated and slower than float32", "set training.mixed_precision: no")
    return {"use_cpu": True}


def task_training_arguments(cfg: RunConfig, task: Any, out_dir: Path) -> tuple[Any, str, bool]:
    """(TrainingArguments, metric for the best model, whether greater is better) for ``task``; also what
    ``cardgen check`` builds to check the training section and ``extra_args`` without training."""
    metric, greater = selection_metric(cfg, task)
    return training_arguments(cfg, out_dir, metric, greater, task), metric, greater


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


STOP_SIGNALS = ("SIGINT", "SIGTERM")  # Ctrl-C, and what kill, timeout, systemd, Docker, Kubernetes, SLURM send


class _StopFlag:
    """Set by SIGINT or SIGTERM: the Trainer stops at the end of the current step and saves a checkpoint.

    A second signal (of either kind) stops at once, as KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self.stopped = False
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            if self.stopped:  # a second signal: stop now
                raise KeyboardInterrupt
            self.stopped = True
            self.signal = signum

        for name in STOP_SIGNALS:
            number = getattr(signal, name)
            try:
                self._previous[number] = signal.signal(number, handler)
            except ValueError:  # not the main thread: leave signals alone
                return

    def restore(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}


PLAN_STEPS = 3  # steps timed before the plan is estimated
PLAN_WARN_S = 7 * 24 * 3600.0  # a plan longer than a week is almost always a typo (num_epochs=1e9)


def plan_warning(seconds_per_step: float, remaining_steps: int) -> str | None:
    """A warning when ``remaining_steps`` at ``seconds_per_step`` take longer than :data:`PLAN_WARN_S`."""
    total = seconds_per_step * remaining_steps
    if total <= PLAN_WARN_S:
        return None
    return (f"the training plan has {remaining_steps:,} more steps; at the measured {seconds_per_step:.3g} s per step "
            f"that is about {total / 86400:,.0f} days (check training.num_epochs / training.max_steps)")


def _callbacks(progress: Progress, stop: _StopFlag, patience: int | None) -> list[Any]:
    from transformers import EarlyStoppingCallback, TrainerCallback

    class ProgressAndStop(TrainerCallback):  # type: ignore[misc]
        """Drives cardgen's progress bar, turns Ctrl-C into a clean stop at a saved checkpoint, and warns when the
        plan would take longer than :data:`PLAN_WARN_S` at the measured step time."""

        warnings: list[str] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            progress.start_task("Training", total=state.max_steps)
            if state.global_step:
                progress.advance(state.global_step)
            self.warnings = []
            self._first = (state.global_step, time.perf_counter())

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            progress.advance(1, epoch=round(state.epoch or 0, 2))
            step0, t0 = self._first
            if state.global_step == step0 + PLAN_STEPS:
                warning = plan_warning((time.perf_counter() - t0) / PLAN_STEPS, state.max_steps - state.global_step)
                if warning:
                    self.warnings.append(warning)
                    progress.note(f"warning: {warning}")
            if stop.stopped:
                control.should_training_stop = True

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            # Stopping ends the epoch early; the Trainer then saves (kept) and, with eval_strategy="epoch", would
            # also evaluate a half-finished epoch: a row an uninterrupted run never has, and a candidate for the
            # "best" checkpoint. Evaluate only when the epoch is really complete.
            if stop.stopped:
                control.should_save = True
                epoch = state.epoch or 0.0
                if abs(epoch - round(epoch)) > 1e-6:
                    control.should_evaluate = False

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            logs = logs or {}
            if "eval_loss" in logs:
                shown = {k.removeprefix("eval_"): v for k, v in logs.items()
                         if k.startswith("eval_") and k not in LOG_SKIP}
                text = "  ".join(f"{k} {v:.4f}" for k, v in shown.items()
                                 if isinstance(v, float) and not k.endswith(("_positive", "precision_macro",
                                                                              "recall_macro")))
                progress.note(f"epoch {logs.get('epoch', state.epoch):.2f}: {text}")

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            progress.end_task()

    callbacks: list[Any] = [ProgressAndStop()]
    if patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    return callbacks


def _trainer_class(base: Any = None) -> Any:
    """transformers.Trainer whose length-grouped batches are a function of (data_seed, epoch) alone.

    The stock sampler draws each epoch's order from the global torch RNG, whose state at the start of an epoch
    depends on everything that ran before (dropout of earlier epochs). A run resumed in the middle of epoch 2
    would then see a different order than the run it continues. Seeding each epoch by its number makes the order
    the same however the run got there; the Trainer skips the batches already trained.
    """
    import torch
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
    from transformers.trainer_utils import has_length

    class EpochSeededLengthGroupedSampler(LengthGroupedSampler):  # type: ignore[misc]
        def __init__(self, *args: Any, seed: int, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.seed = seed
            self.epoch = 0

        def set_epoch(self, epoch: int) -> None:  # called by the Trainer (through accelerate) every epoch
            self.epoch = epoch

        def __iter__(self) -> Any:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))

    class SeededTrainer(base or Trainer):  # type: ignore[misc]
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, LengthGroupedSampler) and sampler.generator is None:
                seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
                return EpochSeededLengthGroupedSampler(sampler.batch_size, lengths=sampler.lengths, seed=seed)
            return sampler

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            # The stock Trainer length-groups the evaluation set too when training is length-grouped, which hands
            # compute_metrics the rows shuffled. Evaluation keeps the dataset's order (sequential on one process;
            # accelerate's even shards, gathered back in order, on several), so per-example metrics (QA spans)
            # line up with their examples.
            if eval_dataset is None or not has_length(eval_dataset):
                return None
            if self.args.world_size <= 1:
                return torch.utils.data.SequentialSampler(eval_dataset)
            return None

    return SeededTrainer


def last_checkpoint(out_dir: Path) -> str | None:
    """The newest complete Trainer checkpoint under the output directory, if any.

    The Trainer writes trainer_state.json last, so a checkpoint without it was cut off mid-write (a killed run).
    """
    import re

    path = out_dir / CHECKPOINT_DIR
    if not path.is_dir():
        return None
    steps = [(int(m.group(1)), d) for d in path.iterdir()
             if (m := re.fullmatch(r"checkpoint-(\d+)", d.name)) and (d / "trainer_state.json").is_file()]
    return str(max(steps)[1]) if steps else None


def train(
    cfg: RunConfig,
    task: Any,
    loaded: Any,
    data: Any,
    out_dir: Path,
    progress: Progress | None = None,
    resume: bool = False,
    extra_callbacks: tuple[Any, ...] = (),
) -> tuple[TrainingRecord, bool]:
    """Fine-tune ``loaded.model`` in place with the Trainer; return the record and whether it was interrupted.

    ``extra_callbacks`` are added to cardgen's own TrainerCallbacks (a sweep's pruning callback).
    """
    from transformers import PrinterCallback

    progress = progress or NullProgress()
    t: TrainingConfig = cfg.training  # type: ignore[assignment]
    args, metric, greater = task_training_arguments(cfg, task, out_dir)
    train_ds = task.train_dataset(data.frames["train"], loaded.tokenizer, cfg, "train")
    eval_ds = task.train_dataset(data.frames["validation"], loaded.tokenizer, cfg, "validation")
    stop = _StopFlag()
    trainer = _trainer_class(task.trainer_base() if hasattr(task, "trainer_base") else None)(
        model=loaded.model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=loaded.tokenizer,
        data_collator=task.collator(loaded.tokenizer, cfg),
        compute_metrics=task.trainer_metrics(cfg, data.label_names),
        callbacks=(callbacks := _callbacks(progress, stop, t.early_stopping_patience) + list(extra_callbacks)),
        **(task.trainer_kwargs(cfg) if hasattr(task, "trainer_kwargs") else {}),
    )
    trainer.remove_callback(PrinterCallback)  # cardgen reports progress itself
    trackers.configure(trainer, out_dir)
    checkpoint = last_checkpoint(out_dir) if resume else None
    stop.install()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except Exception as exc:
        error = checkpoint_write_error(exc, out_dir / CHECKPOINT_DIR)
        if error is None:
            raise
        raise error from exc
    finally:
        stop.restore()
    loaded.model = trainer.model
    loaded.model.eval()
    from cardgen.sharding import has_sharded_parameters

    if has_sharded_parameters(loaded.model):
        # FSDP / ZeRO-3: each process holds a slice of the weights. Gather the whole model on the main process now
        # (a collective, as in Trainer.save_model), so that it alone can save it after the evaluation.
        loaded.full_state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    record = training_record(
        args, trainer.state, metric=metric, greater=greater, resumed_from=Path(checkpoint).name if checkpoint else None,
        stopped_early=bool(t.early_stopping_patience) and trainer.state.global_step < trainer.state.max_steps
        and not stop.stopped)
    record.warnings = [w for cb in callbacks for w in getattr(cb, "warnings", [])]
    record.trackers = trackers.links(trainer, out_dir)
    # A Ctrl-C that lands after the last step (during the final evaluation) stopped nothing.
    return record, stop.stopped and trainer.state.global_step < trainer.state.max_steps
