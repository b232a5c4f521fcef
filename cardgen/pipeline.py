"""``run(config)``: the stages in order, each reading and extending the run record; used by ``cardgen run``.

Everything that can fail on bad input (config, data, model) is checked before anything is written, so a bad run
leaves the output directory as it was. Outputs are written atomically; only the main process writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardgen import outputs
from cardgen.config import RunConfig
from cardgen.console import NullProgress, Progress
from cardgen.distributed import (
    check_distributed,
    is_main_process,
    prepare_distributed,
    wait_for_all_processes,
)
from cardgen.errors import CardgenError, ConfigError, RunFailed, TemplateError
from cardgen.models import auto_config
from cardgen.record import ModelRecord, RunRecord
from cardgen.version import __version__


@dataclass
class RunResult:
    """What a run produced."""

    output_dir: Path
    record: RunRecord


class StageTimer:
    """Wall-clock seconds of each stage, for the record."""

    def __init__(self, progress: Progress) -> None:
        self.seconds: dict[str, float] = {}
        self.progress = progress
        self.current: str | None = None  # the stage running (or the last one that ran)

    @contextlib.contextmanager
    def __call__(self, name: str, title: str) -> Iterator[None]:
        self.progress.stage(title)
        self.current = name
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 2)








def run(cfg: RunConfig, progress: Progress | None = None, resume: bool = False) -> RunResult:
    """Fine-tune (or only load), evaluate, compare, benchmark and document a checkpoint.

    Args:
        cfg: The resolved configuration.
        progress: Where to report progress (nothing by default).
        resume: Continue from the last checkpoint in the output directory.

    Returns:
        The output directory and the run record written to it.
    """
    from cardgen.models import hf_quiet

    with hf_quiet(), _terminate_as_interrupt():
        return _run(cfg, progress, resume)


def check(cfg: RunConfig, progress: Progress | None = None, resume: bool = False, *, config_label: str = "",
          push_to: str | None = None, estimate: bool = True) -> Any:
    """Everything :func:`run` checks and loads before it writes (output directory, config, data, model, tokenizer,
    template), through the same functions in the same order, and the plan of the run; writes nothing.

    Returns:
        The :class:`~cardgen.record.RunPlan`.

    Raises:
        CardgenError: The error the run would stop with, word for word.
    """
    from cardgen.card.render import check_card_target
    from cardgen.data import used_max_length
    from cardgen.models import hf_quiet
    from cardgen.plan import build_plan
    from cardgen.tasks import get_task

    progress = progress or NullProgress()
    with hf_quiet():
        check_distributed(cfg)
        out_dir = Path(cfg.output.dir)
        outputs.check_inputs_outside(cfg, out_dir)
        outputs.check_output_dir(out_dir, cfg.output.overwrite, resume)
        check_card_target(out_dir / "README.md", cfg.output.overwrite_card)
        outputs.check_resume(cfg, out_dir, resume)
        task = get_task(cfg.task)
        inputs = _load(cfg, task, StageTimer(progress), progress)
        cfg, capped = used_max_length(cfg, inputs.data.record)
        return build_plan(cfg, task, inputs, config_label=config_label, push_to=push_to,
                          warnings=inputs.warnings + capped, progress=progress, estimate=estimate)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (kill, timeout, systemd, Docker, Kubernetes, SLURM) ends a run like Ctrl-C: the lock is released
    and what is saved stays whole. During training, train.py turns either signal into a stop at a checkpoint."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@dataclass
class _Loaded:
    """What the run loaded before anything was written: checkpoint, tokenizer, data and model."""

    directory: str
    gguf: str | None
    data: Any
    loaded: Any
    warnings: list[str]


def _run(cfg: RunConfig, progress: Progress | None = None, resume: bool = False) -> RunResult:
    main = is_main_process()
    # Only the main process reports and writes; the others train alongside it and then leave.
    progress = (progress or NullProgress()) if main else NullProgress()
    prepare_distributed()
    check_distributed(cfg)
    out_dir = Path(cfg.output.dir)
    outputs.check_inputs_outside(cfg, out_dir)
    if main:
        outputs.check_output_dir(out_dir, cfg.output.overwrite, resume)  # fails fast, before the lock creates the directory
    from cardgen.card.render import check_card_target

    check_card_target(out_dir / "README.md", cfg.output.overwrite_card)  # a hand-written card: refuse before training
    created = not out_dir.exists()
    from cardgen.files import output_lock

    # The lock first, then every check of what is in the directory: a run that started earlier and prepares
    # its data slowly must not write over a run that finished meanwhile.
    lock = output_lock(out_dir) if main else contextlib.nullcontext()
    try:
        with lock:
            # the other processes: main's
            outputs.check_output_dir(out_dir, cfg.output.overwrite, resume, lock_held=True)
            outputs.check_resume(cfg, out_dir, resume)
            interrupted, record = _checked_run(cfg, out_dir, progress, resume, main)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a run that failed before writing anything leaves no trace
        raise
    if interrupted:
        from cardgen.errors import RunInterrupted

        raise RunInterrupted(f"training interrupted; the run record is in {out_dir / 'run.json'}",
                             f"continue with: cardgen run CONFIG --output {out_dir} --resume")
    return RunResult(output_dir=out_dir, record=record)


def _checked_run(cfg: RunConfig, out_dir: Path, progress: Progress, resume: bool,
                 main: bool) -> tuple[bool, RunRecord]:
    """Load and check everything, then run the stages; (interrupted, record)."""
    from cardgen.data import used_max_length
    from cardgen.tasks import get_task

    task = get_task(cfg.task)
    timer = StageTimer(progress)
    inputs = _load(cfg, task, timer, progress)
    cfg, capped = used_max_length(cfg, inputs.data.record)  # config.yaml holds the length used
    for warning in capped:
        inputs.warnings.append(warning)
        progress.note(f"warning: {warning}")
    record = _new_record(cfg, task, inputs)
    # From here on the output directory is ours: everything above could fail on bad input without writing.
    return _stages(cfg, task, inputs, record, out_dir, timer, progress, resume, main), record


def _load(cfg: RunConfig, task: Any, timer: StageTimer, progress: Progress) -> _Loaded:
    """Checkpoint config, tokenizer, data and model, each checked before anything is written."""
    from cardgen.data_report import leakage_warnings
    from cardgen.models import load_tokenizer, resolve_source

    warnings: list[str] = []
    with timer("load", f"Loading {cfg.model.name_or_path}"):
        model_config = auto_config(cfg)  # also fails early on a path that is no checkpoint
        directory, gguf = resolve_source(cfg.model)
        tokenizer = load_tokenizer(cfg.model, directory, gguf)
    from cardgen.preflight import check_run

    check_run(cfg, model_config, tokenizer)  # every length against the model's positions, before anything runs
    with timer("data", "Preparing data"):
        data = task.prepare_data(cfg, tokenizer, cfg.training is not None, model_config)
        for split in data.record.splits.values():
            if split.num_truncated:
                warnings.append(f"{split.num_truncated} of {split.num_examples} {split.name} examples were longer "
                                f"than {data.record.max_length} tokens and were truncated")
        warnings += leakage_warnings(data.record.report)  # issue 13: on the console and in run.json too
        for warning in warnings:
            progress.note(f"warning: {warning}")
        _eval_split(cfg, data)  # a wrong evaluation.split must fail now, not after hours of training
    if cfg.card.template:
        from cardgen.card.render import check_template

        check_template(cfg.card.template)  # a syntax error too
    with timer("load", f"Loading {cfg.model.name_or_path}"):
        from transformers import set_seed

        # A new head (e.g. the classifier) is initialised while loading, before the Trainer seeds anything:
        # seed here, or two runs with the same seed start from different weights and end with different numbers.
        set_seed(cfg.training.seed if cfg.training is not None else 42)
        loaded = task.load_model(cfg, data.label_names, tokenizer=tokenizer)
    return _Loaded(directory=directory, gguf=gguf, data=data, loaded=loaded, warnings=warnings)


def _new_record(cfg: RunConfig, task: Any, inputs: _Loaded) -> RunRecord:
    """The run record before any stage ran: config, environment, model and data."""
    from cardgen.environment import collect_environment
    from cardgen.models import hub_commit, num_parameters, weights_size_on_disk

    model_record = ModelRecord(
        base_model=cfg.model.name_or_path,
        task=cfg.task,
        pipeline_tag=task.PIPELINE_TAG,
        architecture=type(inputs.loaded.model).__name__,
        num_parameters=num_parameters(inputs.loaded.model),
        revision=cfg.model.revision,
        gguf_file=inputs.gguf,
        newly_initialized=inputs.loaded.newly_initialized,
        trust_remote_code=cfg.model.trust_remote_code,
        size_on_disk_bytes=weights_size_on_disk(inputs.directory),
        commit_sha=hub_commit(cfg.model.name_or_path, cfg.model.revision, inputs.gguf),  # Hub ids only
    )
    return RunRecord(
        config=cfg.to_dict(), environment=collect_environment(), model=model_record, data=inputs.data.record,
        created_at=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        cardgen_version=__version__, warnings=inputs.warnings,
    )


def _stages(cfg: RunConfig, task: Any, inputs: _Loaded, record: RunRecord, out_dir: Path, timer: StageTimer,
            progress: Progress, resume: bool, main: bool) -> bool:
    """Base evaluation, training, evaluation, comparison, benchmark and outputs; True when interrupted."""
    loaded, data = inputs.loaded, inputs.data
    interrupted = False
    if cfg.training is not None and main and cfg.compare.enabled and hasattr(task, "evaluate_base"):
        # Training changes the model in place, so tasks that evaluate their base themselves (the LM and QA
        # tasks) do it now, on the same examples and exactly as the fine-tuned model is evaluated later.
        split = _eval_split(cfg, data)
        with timer("evaluate_base", f"Evaluating the base model on the {split} split"):
            record.base_evaluation = task.evaluate_base(loaded, data.frames[split], cfg, data.label_names,
                                                        split, progress)
    if cfg.training is not None:
        from cardgen.train import train

        with timer("train", "Training"):
            record.training, interrupted = train(cfg, task, loaded, data, out_dir, progress, resume)
        record.warnings.extend(record.training.warnings)
        # Every process has finished training (and loaded the best checkpoint) before the main one
        # evaluates alone and removes the checkpoints; after this point no process waits on another.
        wait_for_all_processes()
        if interrupted:
            record.status = "interrupted"
    if not interrupted and main:
        try:
            split = _eval_split(cfg, data)
            with timer("evaluate", f"Evaluating on the {cfg.evaluation.split} split"):
                record.evaluation = task.evaluate(loaded, data.frames[split], cfg, data.label_names,
                                                  "fine-tuned" if record.training else "model", split, progress)
            from cardgen.examples import pick_examples

            record.examples = pick_examples(cfg.task, data.frames[split], record.evaluation, data.label_names,
                                            cfg.card.examples_per_label)
            _optional_stages(cfg, task, loaded, data, record, timer, progress)
        except Exception as exc:
            if record.training is None:
                raise  # nothing trained, nothing to lose: the directory stays as it was
            raise _save_failed_run(cfg, record, loaded, out_dir, timer, progress, exc) from exc
    if main:
        outputs.write_outputs(cfg, record, loaded, out_dir, timer, progress, save_model=not interrupted)
    return interrupted


def _eval_split(cfg: RunConfig, data: Any) -> str:
    split = cfg.evaluation.split
    if split not in data.frames:
        raise ConfigError(f"`evaluation.split` {split!r} does not exist (have {', '.join(data.frames)})",
                          "set evaluation.split to one of those")
    return split


def _optional_stages(cfg: RunConfig, task: Any, loaded: Any, data: Any, record: RunRecord, timer: StageTimer,
                     progress: Progress) -> None:
    """Comparison with the base model and the speed benchmark, when the config asks for them; each stage
    returns its records and only this function puts them into the run record."""
    if cfg.compare.enabled:
        from cardgen.compare.stage import compare_stage

        with timer("compare", "Comparing with the base model"):
            record.base_evaluation, record.comparison = compare_stage(
                cfg, task, loaded, data, training=record.training, evaluation=record.evaluation,
                model=record.model, base_evaluation=record.base_evaluation, progress=progress)
    if cfg.benchmark.enabled:
        from cardgen.bench.stage import benchmark_stage

        with timer("benchmark", "Benchmarking speed and memory"):
            record.benchmark = benchmark_stage(cfg, task, loaded, data, trained=record.training is not None,
                                               progress=progress)


def _save_failed_run(cfg: RunConfig, record: RunRecord, loaded: Any, out_dir: Path, timer: StageTimer,
                     progress: Progress, exc: Exception) -> CardgenError:
    """A stage after training failed: save the trained model and the record so far, status "failed at <stage>",
    and return the one-line error that names the stage and the directory."""
    stage = timer.current or "evaluate"
    cause = exc.one_line() if isinstance(exc, CardgenError) else f"{type(exc).__name__}: {exc}"
    cause = " ".join(cause.split())[:300]
    record.status = f"failed at {stage}"
    try:
        outputs.write_outputs(cfg, record, loaded, out_dir, timer, progress, save_model=True)
    except TemplateError:
        cause += "; the card uses the built-in template"  # saved all the same
    except CardgenError as write_exc:
        return RunFailed(f"the run failed at {stage} ({cause}), and saving it failed too: {write_exc.message}",
                         write_exc.hint)
    return RunFailed(f"the run failed at {stage}: {cause}; the trained model and the run record so far are "
                     f"saved in {out_dir}",
                     f"fix the cause, then re-render the card with `cardgen card {out_dir}` or run again with "
                     "--overwrite")








def summary(result: RunResult) -> dict[str, Any]:
    """A small JSON summary of a run for CI pipelines (`cardgen run --json`)."""
    rec = result.record
    return {
        "output_dir": str(result.output_dir),
        "status": rec.status,
        "task": rec.model.task,
        "test_metrics": rec.evaluation.metrics if rec.evaluation else None,
        "best_epoch": rec.training.best_epoch if rec.training else None,
        "stage_seconds": rec.stage_seconds,
        "comparison": rec.comparison.summary if rec.comparison else None,
    }
