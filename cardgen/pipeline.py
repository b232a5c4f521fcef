"""``run(config)``: the stages in order, each reading and extending the run record; used by ``cardgen run``.

Everything that can fail on bad input (config, data, model) is checked before anything is written, so a bad run
leaves the output directory as it was. Outputs are written atomically; only the main process writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardgen import outputs
from cardgen.config import RunConfig, dump_config
from cardgen.console import NullProgress, Progress
from cardgen.distributed import (
    check_distributed,
    is_main_process,
    prepare_distributed,
    wait_for_all_processes,
)
from cardgen.errors import CardgenError, ConfigError, OutputError, RunFailed, TemplateError
from cardgen.models import auto_config
from cardgen.record import ModelRecord, RunRecord, save_record
from cardgen.version import __version__

OUTPUT_FILES = ("run.json", "README.md", "config.yaml")
CHECKPOINTS = "checkpoints"  # train.CHECKPOINT_DIR (not imported: train imports torch's world)



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


def check_output_dir(path: Path, overwrite: bool, resume: bool, lock_held: bool = False) -> None:
    """Refuse to mix a new run into an existing one's results.

    Run it while holding the directory's lock (``lock_held``), so no other run can fill the directory between
    this check and the writes. cardgen's own stale temp files (a killed write) are no results: they are removed
    (when the lock is held) and never make the directory "not empty".
    """
    from cardgen.files import is_own_temp, remove_own_temps

    if path.exists() and not path.is_dir():
        raise OutputError(f"output path {path} is a file", "choose a directory with --output")
    if path.is_dir() and lock_held:
        remove_own_temps(path)
    if path.is_dir() and not (overwrite or resume):
        present = [p.name for p in path.iterdir() if p.name != ".cardgen.lock" and not is_own_temp(p.name)]
        if present:
            raise OutputError(f"output directory {path} is not empty ({', '.join(sorted(present)[:4])})",
                              "pass --overwrite to replace it, --resume to continue it, or choose another --output")
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("/"))
    if not probe.is_dir():
        raise OutputError(f"output directory {path} is below {probe}, which is a file",
                          "choose a directory with --output")
    if not _writable(probe):
        raise OutputError(f"output directory {path} is not writable", "choose a writable --output directory")
    from cardgen.files import is_locked

    if path.is_dir() and not lock_held and is_locked(path):
        raise OutputError(f"another cardgen run is writing to {path}",
                          "wait for it to finish or choose another --output directory")


def _writable(directory: Path) -> bool:
    """Whether a file can be created in ``directory``: tried for real (an unnamed temp file where the OS has them),
    because permission bits say nothing for root, read-only mounts or immutable directories."""
    import tempfile

    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def check_resume(cfg: RunConfig, out_dir: Path, resume: bool) -> None:
    """``--resume`` needs training, an existing checkpoint, and must not be combined with ``--overwrite``."""
    if not resume:
        return
    if cfg.output.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other",
                          "--resume continues the run in the output directory, --overwrite replaces it: pick one")
    if cfg.training is None:
        raise ConfigError("--resume needs training, but this run has none (--no-train or training: null)",
                          "drop --resume, or drop --no-train")
    from cardgen.train import CHECKPOINT_DIR, last_checkpoint

    if last_checkpoint(out_dir) is None:
        raise OutputError(f"nothing to resume: no checkpoint in {out_dir / CHECKPOINT_DIR}",
                          "run without --resume (with --overwrite to replace what is in the output directory)")


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
        check_output_dir(out_dir, cfg.output.overwrite, resume)  # fails fast, before the lock creates the directory
    from cardgen.card.render import check_card_target

    check_card_target(out_dir / "README.md", cfg.output.overwrite_card)  # a hand-written card: refuse before training
    created = not out_dir.exists()
    from cardgen.files import output_lock

    # The lock first, then every check of what is in the directory: a run that started earlier and prepares
    # its data slowly must not write over a run that finished meanwhile.
    lock = output_lock(out_dir) if main else contextlib.nullcontext()
    try:
        with lock:
            check_output_dir(out_dir, cfg.output.overwrite, resume, lock_held=True)  # the other processes: main's
            check_resume(cfg, out_dir, resume)
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
    from cardgen.models import num_parameters, weights_size_on_disk

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
            _optional_stages(cfg, task, loaded, data, record, timer, progress)
        except Exception as exc:
            if record.training is None:
                raise  # nothing trained, nothing to lose: the directory stays as it was
            raise _save_failed_run(cfg, record, loaded, out_dir, timer, progress, exc) from exc
    if main:
        _write_outputs(cfg, record, loaded, out_dir, timer, progress, save_model=not interrupted)
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
        _write_outputs(cfg, record, loaded, out_dir, timer, progress, save_model=True)
    except TemplateError:
        cause += "; the card uses the built-in template"  # saved all the same
    except CardgenError as write_exc:
        return RunFailed(f"the run failed at {stage} ({cause}), and saving it failed too: {write_exc.message}",
                         write_exc.hint)
    return RunFailed(f"the run failed at {stage}: {cause}; the trained model and the run record so far are "
                     f"saved in {out_dir}",
                     f"fix the cause, then re-render the card with `cardgen card {out_dir}` or run again with "
                     "--overwrite")


def _write_outputs(cfg: RunConfig, record: RunRecord, loaded: Any, out_dir: Path, timer: StageTimer,
                   progress: Progress, save_model: bool) -> None:
    """Write the run's outputs as one set: all into a staging folder inside ``out_dir``, then moved into place,
    removing what the previous run there wrote and this one does not. A failure (a full disk) leaves the
    previous set whole."""
    from cardgen.files import commit_files, staging_dir

    with timer("write", "Writing the model, run.json, config.yaml and the card"):
        stage = staging_dir(out_dir)
        try:
            saved, pending = _write_set(cfg, record, loaded, stage, out_dir, timer, save_model)
            remove = set(outputs.previous_outputs(out_dir)) - set(record.outputs)
            if record.training is not None:
                remove.discard(CHECKPOINTS)  # this run's own checkpoints by now: kept or removed below
            commit_files(stage, out_dir, remove=sorted(remove))
        except OutputError as exc:  # name the file where it belongs, not the staging folder it was written in
            raise OutputError(exc.message.replace(str(stage), str(out_dir)), exc.hint) from exc
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        if saved and CHECKPOINTS not in record.outputs:
            shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
    if pending is not None:
        raise pending
    progress.note(f"wrote {out_dir}")


def _write_set(cfg: RunConfig, record: RunRecord, loaded: Any, stage: Path, out_dir: Path, timer: StageTimer,
               save_model: bool) -> tuple[bool, TemplateError | None]:
    """Model, config.yaml, plots, card and run.json into ``stage``; (model saved, template error to raise once
    the set is committed)."""
    from cardgen.card.plots import write_plots
    from cardgen.card.render import write_card
    from cardgen.files import atomic_write_text, write_error
    from cardgen.models import weights_size_on_disk

    saved = save_model and cfg.output.save_model and record.training is not None
    if saved:
        save_pretrained(loaded, stage)
        record.model.saved_to = ""
        record.model.size_on_disk_bytes = weights_size_on_disk(stage)
    record.stage_seconds = dict(timer.seconds)
    atomic_write_text(stage / "config.yaml", dump_config(cfg))
    write_plots(record, stage)
    if (out_dir / "README.md").is_file():  # the card keeps the text people wrote outside its markers
        try:
            shutil.copyfile(out_dir / "README.md", stage / "README.md")
        except OSError as exc:
            raise write_error(stage / "README.md", exc) from exc
    pending = None
    try:
        write_card(record, stage / "README.md", template=cfg.card.template)
    except TemplateError as exc:
        if not cfg.card.template:
            raise
        # The run must not be lost to a template mistake: keep the built-in card and say how to re-render.
        write_card(record, stage / "README.md")
        pending = TemplateError(f"{exc.message}; the run is saved in {out_dir} with the built-in card",
                                f"fix the template, then: cardgen card {out_dir} --template {cfg.card.template}")
    kept = record.training is not None and (not saved or bool(cfg.training and cfg.training.keep_checkpoints))
    names = {p.name for p in stage.iterdir()} | {"run.json"}
    record.outputs = sorted(names | ({CHECKPOINTS} if kept and (out_dir / CHECKPOINTS).is_dir() else set()))
    save_record(record, stage / "run.json")
    return saved, pending


def save_pretrained(loaded: Any, out_dir: Path) -> None:
    """Save the fine-tuned model and tokenizer as safetensors into ``out_dir`` (written then moved in place)."""
    import tempfile

    from cardgen.files import write_error

    tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=out_dir))
    try:
        model = loaded.model
        save = model.save_pretrained
        save(tmp, safe_serialization=True)
        loaded.tokenizer.save_pretrained(tmp)
        for item in tmp.iterdir():
            os.chmod(item, 0o644)
            os.replace(item, out_dir / item.name)
    except OSError as exc:
        raise write_error(Path(exc.filename) if isinstance(exc.filename, str) else out_dir, exc) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
