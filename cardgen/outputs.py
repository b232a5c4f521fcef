"""A run's output directory: the checks before a run may write there (not another run's results, no input
inside it, writable, something to resume), the files an earlier run wrote there (its run.json lists them), which
a new run replaces or removes and nothing else, and writing this run's outputs as one set."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from cardgen.config import RunConfig, dump_config
from cardgen.console import Progress
from cardgen.errors import ConfigError, OutputError, TemplateError
from cardgen.record import RunRecord, save_record
from cardgen.trackers import TRACKER_DIR  # TensorBoard's event files, written during training

OUTPUT_FILES = ("run.json", "README.md", "config.yaml")
CHECKPOINTS = "checkpoints"  # train.CHECKPOINT_DIR (not imported: train imports torch's world)

# The standard outputs and what save_pretrained writes for the usual models: what a run recorded before
# ``outputs`` existed is taken to have written these.
LEGACY_FILES = ("run.json", "README.md", "config.yaml", "model.safetensors", "model.safetensors.index.json",
                "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json",
                "tokenizer.model", "chat_template.jinja")


def check_inputs_outside(cfg: RunConfig, out_dir: Path) -> None:
    """Refuse an output directory that holds one of the run's inputs (data files, template, model directory):
    the run's outputs (config.json, README.md, ...) would overwrite them.

    Raises:
        OutputError: Naming the input and its config key.
    """
    out = out_dir.expanduser().resolve()
    inputs = {"data.train": cfg.data.train, "data.validation": cfg.data.validation, "data.test": cfg.data.test,
              "data.dataset": cfg.data.dataset, "card.template": cfg.card.template,
              "model.name_or_path": cfg.model.name_or_path,
              "data.general.file": cfg.data.general.file if cfg.data.general else None}
    for key, value in inputs.items():
        if not value or not Path(value).expanduser().exists():
            continue  # a Hub id or a missing file (reported by its own check)
        source = Path(value).expanduser().resolve()
        if source == out or out in source.parents:
            raise OutputError(f"output directory {out_dir} holds the run's input {value} ({key}); the run's "
                              "outputs would overwrite it",
                              "choose an --output directory outside the data, model and template folders")


def previous_outputs(out_dir: Path) -> list[str]:
    """The files the run recorded in ``out_dir/run.json`` wrote there (what --overwrite replaces or removes).

    Records from before the list existed name the standard outputs and the usual model files.
    """
    import json

    try:
        data = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    names = data.get("outputs")
    if not isinstance(names, list):
        from cardgen.card.plots import PLOT_FILES

        names = [*LEGACY_FILES, *PLOT_FILES]
    # Plain names only: a hand-edited record must not make cardgen delete anything outside the directory.
    return [n for n in names if isinstance(n, str) and n and "/" not in n and "\\" not in n
            and not n.startswith(".") and n not in ("..", ".cardgen.lock")]


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


def write_outputs(cfg: RunConfig, record: RunRecord, loaded: Any, out_dir: Path, timer: Any,
                   progress: Progress, save_model: bool) -> None:
    """Write the run's outputs as one set: all into a staging folder inside ``out_dir``, then moved into place,
    removing what the previous run there wrote and this one does not. A failure (a full disk) leaves the
    previous set whole."""
    from cardgen.files import commit_files, staging_dir

    with timer("write", "Writing the model, run.json, config.yaml and the card"):
        stage = staging_dir(out_dir)
        try:
            saved, pending = write_set(cfg, record, loaded, stage, out_dir, timer, save_model)
            remove = set(previous_outputs(out_dir)) - set(record.outputs)
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


def write_set(cfg: RunConfig, record: RunRecord, loaded: Any, stage: Path, out_dir: Path, timer: Any,
               save_model: bool) -> tuple[bool, TemplateError | None]:
    """Model, config.yaml, plots, card and run.json into ``stage``; (model saved, template error to raise once
    the set is committed)."""
    from cardgen.card.plots import write_plots
    from cardgen.card.render import write_card
    from cardgen.files import atomic_write_text, write_error
    from cardgen.models import weights_size_on_disk

    saved = save_model and cfg.output.save_model and record.training is not None
    if saved:
        save_pretrained(loaded, stage, merge=bool(cfg.peft and cfg.peft.merge))
        record.model.saved_to = ""
        record.model.size_on_disk_bytes = weights_size_on_disk(stage)
        if record.adapter is not None:
            from cardgen.adapters import record_saved

            record_saved(record.adapter, stage)
    record.stage_seconds = dict(timer.seconds)
    if record.resources is not None:
        record.resources.stage_memory = dict(getattr(timer, "memory", {}))
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
    logged = record.training is not None and record.training.trackers.get("tensorboard", "").startswith(TRACKER_DIR)
    names |= {TRACKER_DIR} if logged and (out_dir / TRACKER_DIR).is_dir() else set()
    record.outputs = sorted(names | ({CHECKPOINTS} if kept and (out_dir / CHECKPOINTS).is_dir() else set()))
    save_record(record, stage / "run.json")
    return saved, pending


def save_pretrained(loaded: Any, out_dir: Path, merge: bool = False) -> None:
    """Save the fine-tuned model and tokenizer as safetensors into ``out_dir`` (written then moved in place); an
    adapter alone (see ``adapters.save_adapter``), with ``merge`` also its merged full weights in ``merged/``."""
    import tempfile

    from cardgen.adapters import is_peft_model, save_adapter
    from cardgen.files import write_error

    tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=out_dir))
    try:
        model = loaded.model
        # A model sharded across processes saves the whole weights gathered after training (models.LoadedModel).
        state_dict = getattr(loaded, "full_state_dict", None)
        if is_peft_model(model):
            save_adapter(model, loaded.tokenizer, tmp, merge)
        elif state_dict is not None:
            model.save_pretrained(tmp, safe_serialization=True, state_dict=_tied_as_one(model, state_dict))
            loaded.tokenizer.save_pretrained(tmp)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
            loaded.tokenizer.save_pretrained(tmp)
        for item in tmp.iterdir():
            os.chmod(item, 0o755 if item.is_dir() else 0o644)
            os.replace(item, out_dir / item.name)
    except OSError as exc:
        raise write_error(Path(exc.filename) if isinstance(exc.filename, str) else out_dir, exc) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tied_as_one(model: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
    """``state_dict`` with tied weights (an LM head tied to the embeddings) as one tensor under each name, as in
    the model's own state dict: gathered from shards they arrive as separate copies, and save_pretrained drops a
    tied name only when the tensors are one."""
    out = dict(state_dict)
    first: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        main = first.setdefault(id(param), name)
        if main != name and main in out and name in out:
            out[name] = out[main]
    return out
