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

from cardgen import __version__
from cardgen.config import RunConfig, dump_config
from cardgen.console import NullProgress, Progress
from cardgen.errors import OutputError
from cardgen.record import ModelRecord, RunRecord, save_record

OUTPUT_FILES = ("run.json", "README.md", "config.yaml")


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

    @contextlib.contextmanager
    def __call__(self, name: str, title: str) -> Iterator[None]:
        self.progress.stage(title)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 2)


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun/accelerate launch."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


def check_output_dir(path: Path, overwrite: bool, resume: bool) -> None:
    """Refuse to mix a new run into an existing one's results."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path {path} is a file", "choose a directory with --output")
    if path.is_dir() and not (overwrite or resume):
        present = [p.name for p in path.iterdir() if p.name != ".cardgen.lock"]
        if present:
            raise OutputError(f"output directory {path} is not empty ({', '.join(sorted(present)[:4])})",
                              "pass --overwrite to replace it, --resume to continue it, or choose another --output")
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("/"))
    if not os.access(probe, os.W_OK):
        raise OutputError(f"output directory {path} is not writable", "choose a writable --output directory")


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

    with hf_quiet():
        return _run(cfg, progress, resume)


def _run(cfg: RunConfig, progress: Progress | None = None, resume: bool = False) -> RunResult:
    from cardgen.environment import collect_environment
    from cardgen.models import count_parameters, dir_size
    from cardgen.tasks import get_task

    progress = progress or NullProgress()
    out_dir = Path(cfg.output.dir)
    check_output_dir(out_dir, cfg.output.overwrite, resume)
    task = get_task(cfg.task)
    timer = StageTimer(progress)
    warnings: list[str] = []

    from cardgen.models import load_tokenizer, resolve_source

    with timer("load", f"Loading {cfg.model.name_or_path}"):
        model_config = _auto_config(cfg)  # also fails early on a path that is no checkpoint
        directory, gguf = resolve_source(cfg.model)
        tokenizer = load_tokenizer(cfg.model, directory, gguf)
    with timer("data", "Preparing data"):
        data = task.prepare_data(cfg, tokenizer, cfg.training is not None, model_config)
        for split in data.record.splits.values():
            if split.num_truncated:
                warnings.append(f"{split.num_truncated} of {split.num_examples} {split.name} examples were longer "
                                f"than {data.record.max_length} tokens and were truncated")
    with timer("load", f"Loading {cfg.model.name_or_path}"):
        loaded = task.load_model(cfg, data.label_names, tokenizer=tokenizer)

    environment = collect_environment()
    model_record = ModelRecord(
        base_model=cfg.model.name_or_path,
        task=cfg.task,
        pipeline_tag=task.PIPELINE_TAG,
        architecture=type(loaded.model).__name__,
        num_parameters=count_parameters(loaded.model),
        revision=cfg.model.revision,
        gguf_file=gguf,
        newly_initialized=loaded.newly_initialized,
        trust_remote_code=cfg.model.trust_remote_code,
        size_on_disk_bytes=dir_size(directory),
    )
    record = RunRecord(
        config=cfg.to_dict(), environment=environment, model=model_record, data=data.record,
        created_at=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        cardgen_version=__version__, warnings=warnings,
    )

    # From here on the output directory is ours: everything above could fail on bad input without writing.
    created = not out_dir.exists()
    main = is_main_process()
    from cardgen.io import output_lock

    lock = output_lock(out_dir) if main else contextlib.nullcontext()
    try:
        with lock:
            interrupted = False
            if cfg.training is not None:
                from cardgen.train import train

                with timer("train", "Training"):
                    record.training, interrupted = train(cfg, task, loaded, data, out_dir, progress, resume)
                if interrupted:
                    record.status = "interrupted"
            if not interrupted:
                with timer("evaluate", f"Evaluating on the {cfg.evaluation.split} split"):
                    record.evaluation = task.evaluate(loaded, data.frames[_eval_split(cfg, data)], cfg,
                                                      data.label_names, "fine-tuned" if record.training else "model",
                                                      _eval_split(cfg, data), progress)
                _optional_stages(cfg, task, loaded, data, record, timer, progress)
            if main:
                _write_outputs(cfg, record, loaded, out_dir, timer, progress, save_model=not interrupted)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a run that failed before writing anything leaves no trace
        raise
    if interrupted:
        from cardgen.errors import RunInterrupted

        raise RunInterrupted(f"training interrupted; the run record is in {out_dir / 'run.json'}",
                             f"continue with: cardgen run CONFIG --output {out_dir} --resume")
    return RunResult(output_dir=out_dir, record=record)


def _auto_config(cfg: RunConfig) -> Any:
    """The checkpoint's config (label names, architecture), or None when it cannot be read yet."""
    from transformers import AutoConfig

    from cardgen.models import check_local_checkpoint, resolve_source

    directory, gguf = resolve_source(cfg.model)
    check_local_checkpoint(cfg.model, directory, gguf)
    try:
        return AutoConfig.from_pretrained(directory, revision=cfg.model.revision, gguf_file=gguf,
                                          trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        from cardgen.errors import ModelError

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "trust_remote_code" in str(exc):
            raise ModelError(f"{cfg.model.name_or_path} needs its own code to load (trust_remote_code)",
                             "read that code, then set model.trust_remote_code: true") from exc
        raise ModelError(f"cannot read the model config of {cfg.model.name_or_path}: {first}",
                         "check model.name_or_path (a directory with config.json, or a Hub id)") from exc


def _eval_split(cfg: RunConfig, data: Any) -> str:
    split = cfg.evaluation.split
    if split not in data.frames:
        raise OutputError(f"evaluation split {split!r} does not exist (have {', '.join(data.frames)})",
                          "set evaluation.split to one of those")
    return split


def _optional_stages(cfg: RunConfig, task: Any, loaded: Any, data: Any, record: RunRecord, timer: StageTimer,
                     progress: Progress) -> None:
    """Comparison with the base model and the speed benchmark, when their modules and config ask for them."""
    if cfg.compare.enabled:
        try:
            from cardgen.compare import compare_stage
        except ImportError:
            compare_stage = None
        if compare_stage is not None:
            with timer("compare", "Comparing with the base model"):
                compare_stage(cfg, task, loaded, data, record, progress)
    if cfg.benchmark.enabled:
        try:
            from cardgen.benchmark import benchmark_stage
        except ImportError:
            benchmark_stage = None
        if benchmark_stage is not None:
            with timer("benchmark", "Benchmarking speed and memory"):
                benchmark_stage(cfg, task, loaded, data, record, progress)


def _write_outputs(cfg: RunConfig, record: RunRecord, loaded: Any, out_dir: Path, timer: StageTimer,
                   progress: Progress, save_model: bool) -> None:
    from cardgen.card import write_card
    from cardgen.io import atomic_write_text
    from cardgen.models import dir_size

    with timer("write", "Writing the model, run.json, config.yaml and the card"):
        if save_model and cfg.output.save_model and record.training is not None:
            save_pretrained(loaded, out_dir)
            record.model.saved_to = ""
            record.model.size_on_disk_bytes = dir_size(out_dir)
            if not cfg.training or not cfg.training.keep_checkpoints:
                shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        record.stage_seconds = dict(timer.seconds)
        atomic_write_text(out_dir / "config.yaml", dump_config(cfg))
        try:
            from cardgen.plots import write_plots
        except ImportError:
            write_plots = None
        if write_plots is not None:
            write_plots(record, out_dir)
        save_record(record, out_dir / "run.json")
        write_card(record, out_dir / "README.md")
    progress.note(f"wrote {out_dir}")


def save_pretrained(loaded: Any, out_dir: Path) -> None:
    """Save the fine-tuned model and tokenizer as safetensors into ``out_dir`` (written then moved in place)."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=out_dir))
    try:
        model = loaded.model
        save = model.save_pretrained
        save(tmp, safe_serialization=True)
        loaded.tokenizer.save_pretrained(tmp)
        for item in tmp.iterdir():
            os.chmod(item, 0o644)
            os.replace(item, out_dir / item.name)
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
        "comparison": (rec.comparison or {}).get("summary") if rec.comparison else None,
    }
