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
    world_size,
)
from cardgen.errors import CardgenError, ConfigError, RunFailed, TemplateError
from cardgen.experiments.default import training_stage
from cardgen.experiments.stage import TrainingStage
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

    def __init__(self, progress: Progress, energy: Any = None) -> None:
        self.seconds: dict[str, float] = {}
        self.memory: dict[str, Any] = {}  # stage -> MemoryStats, for the stages in MEMORY_STAGES
        self.progress = progress
        self.current: str | None = None  # the stage running (or the last one that ran)
        self.energy = energy  # experiments.energy.EnergyMeter: codecarbon around the tracked stages (None: off)

    @contextlib.contextmanager
    def __call__(self, name: str, title: str) -> Iterator[None]:
        self.progress.stage(title)
        self.current = name
        tracker = _memory_tracker() if name in MEMORY_STAGES else contextlib.nullcontext()
        start = time.perf_counter()
        try:
            with tracker, (self.energy(name) if self.energy is not None else contextlib.nullcontext()):
                yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 2)
            if name in MEMORY_STAGES:
                with contextlib.suppress(RuntimeError):  # the tracker never started
                    self.memory[name] = tracker.result()  # type: ignore[union-attr]


# The stages whose peak memory the run records: the comparison with an adapter evaluates the base on the same
# in-memory model, so its peak is to stay near the fine-tuned model's evaluation.
MEMORY_STAGES = ("evaluate_base", "evaluate", "compare")


def _memory_tracker() -> Any:
    from cardgen.bench.timing import MemoryTracker
    from cardgen.models import pick_device

    return MemoryTracker(pick_device())








def run(cfg: RunConfig, progress: Progress | None = None, resume: bool = False,
        training: TrainingStage | None = None) -> RunResult:
    """Fine-tune (or only load), evaluate, compare, benchmark and document a checkpoint.

    Args:
        cfg: The resolved configuration.
        progress: Where to report progress (nothing by default).
        resume: Continue from the last checkpoint in the output directory.
        training: The training stage (default: one training, or one per seed of ``training.seeds``;
            ``cardgen sweep`` passes its study).

    Returns:
        The output directory and the run record written to it.
    """
    from cardgen.models import hf_quiet

    with hf_quiet(), _terminate_as_interrupt():
        return _run(cfg, progress, resume, training or training_stage(cfg))


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
    general: Any = None  # experiments.general.GeneralSet: the forgetting check's set (data.general)
    adapter: Any = None  # the AdapterRecord of the adapter trained or loaded


def _run(cfg: RunConfig, progress: Progress | None, resume: bool, training: TrainingStage) -> RunResult:
    main = is_main_process()
    # Only the main process reports and writes; the others train and evaluate alongside it, then leave.
    progress = (progress or NullProgress()) if main else NullProgress()
    prepare_distributed()
    from cardgen.adapters import check_options

    check_options(cfg)  # LoRA, 4-bit weights and precision this machine can run, before anything loads
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
            training.check_resume(cfg, out_dir, resume)
            interrupted, record = _checked_run(cfg, out_dir, progress, resume, main, training)
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
                 main: bool, training: TrainingStage) -> tuple[bool, RunRecord]:
    """Load and check everything, then run the stages; (interrupted, record)."""
    from cardgen.data import used_max_length
    from cardgen.experiments.energy import energy_meter
    from cardgen.tasks import get_task

    task = get_task(cfg.task)
    timer = StageTimer(progress, energy_meter(cfg, main))  # a bad energy.country_iso_code fails here
    inputs = _load(cfg, task, timer, progress)
    cfg, capped = used_max_length(cfg, inputs.data.record)  # config.yaml holds the length used
    for warning in capped:
        inputs.warnings.append(warning)
        progress.note(f"warning: {warning}")
    record = _new_record(cfg, task, inputs)
    # From here on the output directory is ours: everything above could fail on bad input without writing.
    return _stages(cfg, task, inputs, record, out_dir, timer, progress, resume, main, training), record


def _load(cfg: RunConfig, task: Any, timer: StageTimer, progress: Progress) -> _Loaded:
    """Checkpoint config, tokenizer, data and model, each checked before anything is written."""
    from cardgen.data_report import leakage_warnings
    from cardgen.models import load_tokenizer, resolve_source

    warnings = check_distributed(cfg)
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
        from cardgen.experiments.general import prepare_general

        general = prepare_general(cfg, task, tokenizer, model_config, data.label_names)  # checked now, too
    if cfg.card.template:
        from cardgen.card.render import check_template

        check_template(cfg.card.template)  # a syntax error too
    with timer("load", f"Loading {cfg.model.name_or_path}"):
        from transformers import set_seed

        # A new head (e.g. the classifier) is initialised while loading, before the Trainer seeds anything:
        # seed here, or two runs with the same seed start from different weights and end with different numbers.
        set_seed(cfg.training.seed if cfg.training is not None else 42)
        loaded = task.load_model(cfg, data.label_names, tokenizer=tokenizer)
        from cardgen.adapters import prepare_adapter

        adapter = prepare_adapter(cfg, loaded)  # LoRA from the peft: section, or the saved adapter loaded
    return _Loaded(directory=directory, gguf=gguf, data=data, loaded=loaded, warnings=warnings, general=general,
                   adapter=adapter)


def _new_record(cfg: RunConfig, task: Any, inputs: _Loaded) -> RunRecord:
    """The run record before any stage ran: config, environment, model and data."""
    from cardgen.adapters import resources, unwrapped
    from cardgen.environment import collect_environment
    from cardgen.models import hub_commit, num_parameters, weights_size_on_disk

    model_record = ModelRecord(
        base_model=cfg.model.name_or_path,
        task=cfg.task,
        pipeline_tag=task.pipeline_tag(cfg) if hasattr(task, "pipeline_tag") else task.PIPELINE_TAG,
        architecture=type(unwrapped(inputs.loaded.model)).__name__,
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
        adapter=inputs.adapter, resources=resources(cfg, inputs.loaded.model),
    )


def _stages(cfg: RunConfig, task: Any, inputs: _Loaded, record: RunRecord, out_dir: Path, timer: StageTimer,
            progress: Progress, resume: bool, main: bool, training: TrainingStage) -> bool:
    """Base evaluation, training, evaluation, comparison, benchmark and outputs; True when interrupted."""
    from cardgen.sharding import sharded_evaluation

    loaded, data = inputs.loaded, inputs.data
    interrupted = False
    # In a launch of several processes every process evaluates its share of the examples (sharding.py); the
    # main process alone benchmarks and writes.
    evaluates = main or world_size() > 1
    if (cfg.training is not None and evaluates and cfg.compare.enabled and hasattr(task, "evaluate_base")
            and record.adapter is None):  # with an adapter the compare stage disables it instead
        # Training changes the model in place, so tasks that evaluate their base themselves (the LM and QA
        # tasks) do it now, on the same examples and exactly as the fine-tuned model is evaluated later.
        split = _eval_split(cfg, data)
        with timer("evaluate_base", f"Evaluating the base model on the {split} split"), sharded_evaluation():
            record.base_evaluation = task.evaluate_base(loaded, data.frames[split], cfg, data.label_names,
                                                        split, progress)
    if inputs.general is not None and main and cfg.training is not None and hasattr(task, "evaluate_base"):
        from cardgen.experiments.general import evaluate_general_base

        with timer("evaluate_base", "Evaluating the base model on the general set (forgetting check)"):
            evaluate_general_base(cfg, task, loaded, inputs.general, progress)  # before training changes it
    if cfg.training is not None:
        with timer("train", "Training"):
            trained = training(cfg, task, loaded, data, out_dir, progress, resume)
        record.training, interrupted, record.experiments = trained.training, trained.interrupted, trained.experiments
        if trained.cfg is not None:  # a sweep: the kept model's own settings
            cfg, record.config = trained.cfg, trained.cfg.to_dict()
        if trained.data is not None:
            data, record.data = trained.data, trained.data.record
        record.warnings.extend(record.training.warnings)
        # Every process has finished training (and loaded the best checkpoint) before they evaluate and the
        # main one removes the checkpoints.
        wait_for_all_processes()
        if interrupted:
            record.status = "interrupted"
    if not interrupted and evaluates:
        try:
            split = _eval_split(cfg, data)
            with timer("evaluate", f"Evaluating on the {cfg.evaluation.split} split"), sharded_evaluation():
                record.evaluation = task.evaluate(loaded, data.frames[split], cfg, data.label_names,
                                                  "fine-tuned" if record.training else "model", split, progress)
            from cardgen.examples import pick_examples

            record.examples = pick_examples(cfg.task, data.frames[split], record.evaluation, data.label_names,
                                            cfg.card.examples_per_label)
            _optional_stages(cfg, task, loaded, data, record, timer, progress, main)
            _experiment_stages(cfg, task, inputs, record, timer, progress, main)
        except Exception as exc:
            if record.training is None or not main:
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
                     progress: Progress, main: bool = True) -> None:
    """Comparison with the base model (on every process) and the speed benchmark (on the main one), when the
    config asks for them; each stage returns its records and only this function puts them into the run record."""
    from cardgen.sharding import sharded_evaluation

    if cfg.compare.enabled:
        from cardgen.compare.stage import compare_stage

        with timer("compare", "Comparing with the base model"), sharded_evaluation():
            record.base_evaluation, record.comparison = compare_stage(
                cfg, task, loaded, data, training=record.training, evaluation=record.evaluation,
                model=record.model, base_evaluation=record.base_evaluation, progress=progress,
                adapter=record.adapter)
    if cfg.benchmark.enabled and main and not _skipped_when_sharded(loaded.model, record, progress, (
            "the benchmark was skipped: the model's weights are sharded across the processes (FSDP or ZeRO-3), and "
            "its speed is measured in one process; measure the saved model with `cardgen bench`")):
        from cardgen.bench.stage import benchmark_stage

        with timer("benchmark", "Benchmarking speed and memory"):
            record.benchmark = benchmark_stage(cfg, task, loaded, data, trained=record.training is not None,
                                               progress=progress)
    if record.adapter is not None and record.base_evaluation is not None:
        record.adapter.base_evaluation = record.base_evaluation.extra.get("base_via")


def _skipped_when_sharded(model: Any, record: RunRecord, progress: Progress, warning: str) -> bool:
    """True, with ``warning`` in the record and on the console, when the model's weights are sharded across the
    processes (FSDP, ZeRO-3): a stage that runs on the main process alone cannot run its forward passes then."""
    from cardgen.sharding import has_sharded_parameters

    if not has_sharded_parameters(model):
        return False
    record.warnings.append(warning)
    progress.note(f"warning: {warning}")
    return True


def _experiment_stages(cfg: RunConfig, task: Any, inputs: _Loaded, record: RunRecord, timer: StageTimer,
                       progress: Progress, main: bool = True) -> None:
    """The forgetting check on data.general (the main process alone: it is small), the energy record and the ship
    gate's verdict (issue 16)."""
    from cardgen.experiments.energy import evaluated_tokens
    from cardgen.experiments.gate import run_verdict

    if inputs.general is not None and main and not _skipped_when_sharded(inputs.loaded.model, record, progress, (
            "the forgetting check (data.general) was skipped: the model's weights are sharded across the processes "
            "(FSDP or ZeRO-3); run `cardgen compare` on the saved models with the general set")):
        from cardgen.experiments.general import general_stage

        with timer("general", f"Scoring both models on the general set {inputs.general.record.name}"):
            record.general = general_stage(cfg, task, inputs.loaded, inputs.data, inputs.general, record, progress)
    if timer.energy is not None:
        frame = inputs.data.frames.get(record.evaluation.split) if record.evaluation else None
        record.energy = timer.energy.record(*evaluated_tokens(task, record.evaluation, frame,
                                                              inputs.loaded.tokenizer, cfg))
    record.verdict = run_verdict(cfg, record)


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
        "verdict": _verdict_summary(rec),
    }


def _verdict_summary(rec: RunRecord) -> dict[str, Any] | None:
    """The ship gate's verdict for `--json` (None without compare.require)."""
    from cardgen.record import to_dict

    return to_dict(rec.verdict) if rec.verdict is not None else None
