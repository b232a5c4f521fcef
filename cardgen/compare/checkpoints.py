"""``cardgen compare BASE FT``: two checkpoints evaluated on exactly the same examples, then compared.

Classification: the fine-tuned classifier against a zero-shot or linear-probe base (:mod:`.baseline`), with
intervals, McNemar and permutation tests (:mod:`.classification`). LM and QA tasks: both evaluated by the task,
then paired tests over documents (:mod:`.documents`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardgen.compare.baseline import base_method, is_backbone_only, linear_probe, zero_shot
from cardgen.compare.classification import classification_comparison, example_texts
from cardgen.console import NullProgress, Progress
from cardgen.errors import CardgenError, CommandTerms, ConfigError, DataError, ModelError
from cardgen.record import (
    Comparison,
    EvaluationRecord,
)

if TYPE_CHECKING:

    pass


def compare(
    base: str,
    fine_tuned: str,
    data: str,
    *,
    task: str = "text-classification",
    split: str = "test",
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    max_length: int | None = None,
    train: str | None = None,
    dataset_config: str | None = None,
    batch_size: int | None = None,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    probe_max_train: int = 20000,
    progress: Progress | None = None,
    permutations: int = 10000,
) -> Comparison:
    """Evaluate two checkpoints on exactly the same examples and compare them with intervals and paired tests.

    Args:
        base: The base checkpoint (directory, Hub id or ``pkg:`` path).
        fine_tuned: The fine-tuned checkpoint, e.g. the output directory of ``cardgen run``.
        data: A data file (csv, tsv, json, jsonl, parquet) or a Hub dataset / saved dataset directory.
        task: ``text-classification`` (probe or zero-shot base, McNemar, flips), or ``causal-lm``, ``masked-lm``,
            ``question-answering`` (both evaluated by the task; intervals and permutation tests over documents;
            the ``lm``/``qa`` settings come from FT's run.json when it has one).
        split: The split to evaluate on (for a file, only its name in the results).
        text_column: Column with the input text.
        label_column: Column with the gold label.
        label_names: Class names in the fine-tuned model's label-id order (default: the model's own names, or
            the sorted labels of the data).
        max_length: Truncation length for both models (default: the one recorded in FT's run.json, else 128).
        train: Training examples for the linear probe, needed when the base has no trained head for the labels
            (default: the dataset's train split, when ``data`` is a dataset).
        dataset_config: Config name of a Hub dataset.
        batch_size: Examples per forward pass (default: the one recorded in FT's run.json, else 32).
        bootstrap_samples: Bootstrap resamples for the intervals.
        confidence: Coverage of the intervals.
        seed: Seed of the resampling, the permutations and the probe.
        probe_max_train: At most this many training examples fit the probe (a seeded subset).
        progress: Where to report progress (nothing by default).
        permutations: Permutations behind every permutation p-value (its floor is ``1 / (1 + permutations)``).

    Returns:
        The :class:`~cardgen.record.Comparison`, with both models' per-example evaluations attached.

    Raises:
        ConfigError: A setting is out of range or the task is not supported.
        DataError: The data cannot be used (missing file, column or labels; no training examples for a probe).
        ModelError: A checkpoint cannot be loaded, or the fine-tuned one has no head for these labels.
    """
    from cardgen.models import hf_quiet

    with hf_quiet(), _in_compare_terms():
        return _compare(base, fine_tuned, data, task=task, split=split, text_column=text_column,
                        label_column=label_column, label_names=label_names, max_length=max_length, train=train,
                        dataset_config=dataset_config, batch_size=batch_size, bootstrap_samples=bootstrap_samples,
                        confidence=confidence, seed=seed, probe_max_train=probe_max_train,
                        progress=progress or NullProgress(), permutations=permutations)


def _compare(base: str, fine_tuned: str, data: str, *, task: str, split: str, text_column: str, label_column: str,
             label_names: Sequence[str] | None, max_length: int | None, train: str | None,
             dataset_config: str | None, batch_size: int | None, bootstrap_samples: int, confidence: float, seed: int,
             probe_max_train: int, progress: Progress, permutations: int) -> Comparison:
    from cardgen.config import load_config
    from cardgen.files import package_path
    from cardgen.models import auto_config, load_tokenizer, pick_device, resolve_source
    from cardgen.tasks import get_task

    start = time.perf_counter()
    task = _task_name(task)
    _check_settings(bootstrap_samples, confidence, batch_size, probe_max_train, max_length)
    if permutations < 99:
        raise ConfigError(f"--permutations must be >= 99 (got {permutations})", "use e.g. --permutations 10000")
    fine_tuned = package_path(fine_tuned) if fine_tuned.startswith("pkg:") else fine_tuned
    recorded = _recorded_run(fine_tuned)
    recorded_base, warnings = _recorded_base(base, recorded, progress)
    recorded_length, recorded_batch = _recorded_settings(recorded)
    max_length = max_length or recorded_length or 128
    batch_size = batch_size or recorded_batch or 32
    data_section = _data_section(data, split=split, text_column=text_column, label_column=label_column,
                                 label_names=label_names, max_length=max_length, train=train,
                                 dataset_config=dataset_config)
    if task != "text-classification":
        comparison = _compare_scores(base, fine_tuned, data_section, task=task, split=split, batch_size=batch_size,
                                     sections=_recorded_sections(recorded, task), n_resamples=bootstrap_samples,
                                     confidence=confidence, seed=seed, progress=progress,
                                     n_permutations=permutations)
        comparison.seconds = round(time.perf_counter() - start, 2)
        comparison.recorded_base_model, comparison.warnings = recorded_base, warnings
        return comparison
    cfg = load_config(data={
        "model": {"name_or_path": base}, "task": task, "data": data_section, "training": None,
        "evaluation": {"split": "test", "batch_size": batch_size},
        "compare": {"bootstrap_samples": bootstrap_samples, "confidence": confidence, "seed": seed,
                    "probe_max_train": probe_max_train, "permutations": permutations},
        "benchmark": {"enabled": False},
    })
    ft_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name_or_path=fine_tuned))
    tasks = get_task(task)
    device = pick_device()

    ft_config = auto_config(ft_cfg)
    base_config = auto_config(cfg)
    base_tok = load_tokenizer(cfg.model, *resolve_source(cfg.model))
    ft_tok = load_tokenizer(ft_cfg.model, *resolve_source(ft_cfg.model))
    prepared = tasks.prepare_data(cfg, base_tok, False, ft_config)
    names = prepared.label_names
    _check_labels(ft_config, names)
    frame = prepared.frames["test"]
    train_frame = prepared.frames.get("train")
    method = base_method(base_config, names)
    if method == "linear-probe" and train_frame is None:
        raise _needs_train(base)

    ft_eval = _evaluate_fine_tuned(tasks, ft_cfg, ft_tok, frame, names, split, device, progress)

    probe = None
    base_eval = None
    if method == "zero-shot":
        base_eval = zero_shot(cfg, tasks, base_tok, frame, names, split, device, progress)
    if base_eval is None:
        method = "linear-probe"
        if train_frame is None:
            raise _needs_train(base)
        base_eval, probe = linear_probe(cfg.model, cfg, base_tok, train_frame, frame, names, split=split,
                                        max_train=probe_max_train, seed=seed, batch_size=batch_size, device=device,
                                        progress=progress)
    comparison = classification_comparison(
        ft_eval.labels, base_eval.predictions, ft_eval.predictions, names, texts=example_texts(frame), split=split,
        base_model=base, fine_tuned_model=fine_tuned, method=method, n_resamples=bootstrap_samples,
        confidence=confidence, seed=seed, n_permutations=cfg.compare.permutations, probe=probe,
        max_length=prepared.record.max_length,
    )
    comparison.base_evaluation = base_eval
    comparison.fine_tuned_evaluation = ft_eval
    comparison.seconds = round(time.perf_counter() - start, 2)
    comparison.recorded_base_model, comparison.warnings = recorded_base, warnings
    return comparison


def _compare_scores(base: str, fine_tuned: str, data_section: dict[str, Any], *, task: str,
                    sections: dict[str, Any], **kwargs: Any) -> Comparison:
    """LM, QA and generation tasks: both evaluated by the task on the same examples (documents.py), or, for seq2seq
    and causal LMs tuned on instructions, both generating for the same prompts (generation.py)."""
    from cardgen.compare import documents, generation

    for key in ("label_column", "label_names"):
        data_section.pop(key, None)
    module: Any = generation if generation.is_generation(task, sections) else documents
    comparison: Comparison = module.compare_checkpoints(base, fine_tuned, data_section, task=task, sections=sections,
                                                        **kwargs)
    return comparison


def _recorded_base(base: str, run: dict[str, Any], progress: Progress) -> tuple[str | None, list[str]]:
    """The base model FT's run.json records (None when FT is no run output, or was not trained) and, when BASE
    is another checkpoint, the warning that says so (also reported through ``progress`` at once)."""
    model = run.get("model") if isinstance(run.get("model"), dict) else None
    recorded = model.get("base_model") if model else None
    if not isinstance(recorded, str) or not recorded or not run.get("training"):
        return None, []
    if _same_checkpoint(base, recorded):
        return recorded, []
    warning = (f"FT's run.json records that it was fine-tuned from {recorded}, but BASE is {base}: unless the two "
               "are the same model, this compares FT with a model it was not trained from")
    progress.note(f"warning: {warning}")
    return recorded, [warning]


def _same_checkpoint(a: str, b: str) -> bool:
    """Whether two model references name the same checkpoint: equal Hub ids, or paths to the same directory."""
    from cardgen.files import package_path

    def where(name: str) -> str:
        name = package_path(name) if name.startswith("pkg:") else name
        path = Path(name).expanduser()
        return str(path.resolve()) if path.exists() else name.rstrip("/")

    return where(a) == where(b)


# compare builds a config from its arguments, so what it calls raises errors that name config keys: each is
# restated with the flag compare has for it (and a compare hint where it has none).
COMPARE_FLAGS = {
    "model.name_or_path": "BASE / FT", "data.label_names": "--label-names", "data.text_column": "--text-column",
    "data.label_column": "--label-column", "data.max_length": "--max-length", "data.train": "--train",
    "data.test": "--data", "data.dataset": "--data", "data.dataset_config": "--dataset-config",
    "data.splits.test": "--split", "evaluation.batch_size": "--batch-size", "compare.bootstrap_samples": "--bootstrap",
    "compare.confidence": "--confidence", "compare.seed": "--seed", "compare.permutations": "--permutations",
}
COMPARE_HINTS: dict[type[CardgenError], str] = {
    ConfigError: "see `cardgen compare --help`",
    DataError: "check --data, --text-column and --label-column (and --label-names, --train if given)",
    ModelError: "check BASE / FT (checkpoint directories, pkg: paths or Hub ids)",
}


@contextlib.contextmanager
def _in_compare_terms() -> Iterator[None]:
    from cardgen.config import RunConfig

    try:
        yield
    except CardgenError as exc:
        sections = tuple(f.name for f in dataclasses.fields(RunConfig))
        CommandTerms("compare", COMPARE_FLAGS, COMPARE_HINTS, sections).restate(exc)
        raise


def _check_labels(ft_config: Any, names: list[str]) -> None:
    """The fine-tuned classifier's labels must be the data's, in the same order."""
    from cardgen.tasks.classification import model_label_names

    ft_names = model_label_names(ft_config)
    if ft_names is not None and ft_names != names:
        raise ModelError(f"the fine-tuned model's labels [{', '.join(ft_names)}] differ from the label names "
                         f"[{', '.join(names)}]",
                         f"pass --label-names in the model's order ({','.join(ft_names)}) if the data uses them")
    if ft_names is None and getattr(ft_config, "num_labels", len(names)) != len(names):
        raise ModelError(f"the fine-tuned model has {ft_config.num_labels} labels, the data {len(names)}",
                         "compare on data with the labels the model was fine-tuned on")


def _evaluate_fine_tuned(tasks: Any, ft_cfg: Any, ft_tok: Any, frame: Any, names: list[str], split: str,
                         device: Any, progress: Progress) -> EvaluationRecord:
    """FT evaluated by the task; refused when its classification head is not trained for these labels."""
    ft_loaded = tasks.load_model(ft_cfg, names, tokenizer=ft_tok)
    head = [k for k in ft_loaded.newly_initialized if not is_backbone_only(k)]
    if head:
        raise ModelError(f"{ft_cfg.model.name_or_path} has no trained classification head for these {len(names)} "
                         f"labels (transformers initialised {', '.join(head[:3])} fresh)",
                         "give a fine-tuned classifier (e.g. the output directory of `cardgen run`) as FT")
    ft_loaded.model.to(device)
    evaluation: EvaluationRecord = tasks.evaluate(ft_loaded, frame, ft_cfg, names, "fine-tuned", split, progress)
    return evaluation


def _task_name(task: str) -> str:
    """``--task`` as one of cardgen's task names (aliases accepted), or a one-line error with the nearest."""
    from cardgen.config import TASK_ALIASES, TASKS

    task = TASK_ALIASES.get(task, task)
    if task not in TASKS:
        import difflib

        close = difflib.get_close_matches(task, TASKS, n=1, cutoff=0.5)
        raise ConfigError(f"--task must be one of {', '.join(TASKS)} (got {task!r})",
                          f"did you mean --task {close[0]}?" if close else "pass one of them")
    return task


def _data_section(data: str, *, split: str, text_column: str, label_column: str,
                  label_names: Sequence[str] | None, max_length: int, train: str | None,
                  dataset_config: str | None) -> dict[str, Any]:
    """The ``data`` config section both checkpoints are evaluated with: a test file or a Hub dataset's split."""
    section: dict[str, Any] = {"text_column": text_column, "label_column": label_column,
                               "max_length": max_length, "name": Path(data).name}
    if label_names:
        section["label_names"] = list(label_names)
    if Path(data).expanduser().is_file():
        section["test"] = data
    elif Path(data).suffix.lower() in (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt") or data.startswith(
            (".", "/", "~")) and not Path(data).expanduser().is_dir():
        raise DataError(f"data file {data} does not exist", "check --data (a file, or a Hub dataset name)")
    else:
        section.update({"dataset": data, "dataset_config": dataset_config, "splits": {"test": split}})
    if train:
        if not Path(train).expanduser().is_file():
            raise DataError(f"training file {train} does not exist", "check --train")
        section["train"] = train
    return section


def _needs_train(base: str) -> DataError:
    return DataError(f"{base} has no trained head for these labels, so the baseline is a linear probe on its "
                     "frozen features, which needs training examples",
                     "give --train FILE (e.g. the train split the model was fine-tuned on)")


def _check_settings(bootstrap_samples: int, confidence: float, batch_size: int | None, probe_max_train: int,
                    max_length: int | None) -> None:
    if bootstrap_samples < 100:
        raise ConfigError(f"--bootstrap must be >= 100 (got {bootstrap_samples})", "use e.g. --bootstrap 1000")
    if not 0.5 < confidence < 1:
        raise ConfigError(f"confidence must be in (0.5, 1) (got {confidence})")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1 (got {batch_size})")
    if probe_max_train < 1:
        raise ConfigError(f"probe_max_train must be >= 1 (got {probe_max_train})")
    if max_length is not None and max_length < 8:
        raise ConfigError(f"--max-length must be >= 8 (got {max_length})")


def _recorded_run(path: str) -> dict[str, Any]:
    """run.json of a `cardgen run` output directory, or {} when ``path`` is not one (or the file is unreadable)."""
    import json

    try:
        raw = json.loads((Path(path).expanduser() / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _recorded_settings(run: dict[str, Any]) -> tuple[int | None, int | None]:
    """(truncation length, evaluation batch size) of the run, so compare matches it.

    The batch size matters only in the last bits (padding widths change the float arithmetic), but matching it
    makes `cardgen compare` reproduce the run's comparison exactly.
    """
    max_length = (run.get("data") or {}).get("max_length")
    batch_size = ((run.get("config") or {}).get("evaluation") or {}).get("batch_size")
    return (max_length if isinstance(max_length, int) else None,
            batch_size if isinstance(batch_size, int) else None)


def _recorded_sections(run: dict[str, Any], task: str) -> dict[str, Any]:
    """The run's ``lm`` / ``qa`` sections when it had the same task: windows, stride, masks and QA settings, so both
    checkpoints are evaluated as that run evaluated them."""
    config = run.get("config") or {}
    if not isinstance(config, dict) or config.get("task") != task:
        return {}
    return {key: config[key] for key in ("lm", "qa", "generation", "seq2seq", "instruction")
            if isinstance(config.get(key), dict)}
