"""Start without a config: infer a run's settings from a model and a data source.

``cardgen run --model M --data D`` and ``cardgen init --model M --data D`` both call :func:`infer_run`. It reads
the model's config (not its weights) and the data's columns and types, and returns the config as a mapping plus one
note per inferred setting (task, text and label columns, label names, splits). Whatever it cannot decide alone
(two text-like columns, a language model with labelled data) is a :class:`~cardgen.errors.ConfigError` naming the
flag to set. The notes go into ``card.inferred``, so the card states them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardgen.config import TASK_ALIASES, TASKS, ModelConfig
from cardgen.data import FORMATS, HUB_SPLIT_NAMES, read_table
from cardgen.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_ROWS = 2000  # rows inspected per column
MAX_CLASSES = 50  # more distinct values than this is not a label column
QA_COLUMNS = ("question", "context", "answers")
TASK_FLAG = f"pass --task ({' | '.join(TASKS)})"


@dataclass
class Inference:
    """A config inferred from a model and a data source.

    Attributes:
        raw: The config as a mapping: what ``load_config(data=raw)`` reads and what ``cardgen init`` writes.
        notes: One line per inferred setting, for the console and the card (``card.inferred``).
        comments: Config key (``data.text_column``) -> why it has its value, for ``cardgen init``'s comments.
    """

    raw: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    comments: dict[str, str] = field(default_factory=dict)

    def note(self, key: str, value: Any, why: str) -> None:
        self.notes.append(f"{key}: {value} ({why})")
        self.comments[key] = f"inferred: {why}"


@dataclass
class _Columns:
    """What each column of the data looks like."""

    text: list[str]  # columns of free text
    label: list[str]  # columns with few distinct short values (or a ClassLabel)
    all: list[str]
    class_names: dict[str, list[str]] = field(default_factory=dict)  # ClassLabel names by column


def infer_run(model: str, data: str, *, task: str | None = None, output: str | None = None,
              text_column: str | None = None, text_pair_column: str | None = None, label_column: str | None = None,
              base_dir: Path | None = None) -> Inference:
    """A run's config from a model and a data source, with what was inferred and why.

    Args:
        model: Hub id, local checkpoint directory, ``.gguf`` file or ``pkg:`` path.
        data: A local data file (its ``validation``/``test`` siblings are found beside a ``train`` file), a folder
            of split files, a saved ``DatasetDict`` folder, or a Hub dataset id.
        task: The task, when the user named it.
        output: The output directory (default ``runs/<model>-<data>``).
        text_column, text_pair_column, label_column: Columns the user named.
        base_dir: Where relative paths start (the working directory).

    Raises:
        ConfigError: The task or a column cannot be decided; the message names the flag that decides it.
        DataError, ModelError: The data or the model cannot be read.
    """
    base = base_dir or Path.cwd()
    inf = Inference(raw={})
    model_value = _model_value(model, base)
    model_config = _model_config(model_value)
    data_section, frame, columns, source_name = _data_section(data, base, inf)
    chosen = _task(task, model_config, columns, label_column, inf)
    data_section.update(_columns_for(chosen, columns, frame, data_section, text_column, text_pair_column,
                                     label_column, inf))
    data_section.setdefault("name", source_name)
    order = ("task", "data.text_column", "data.text_pair_column", "data.label_column", "data.label_names",
             "data.validation", "data.test")
    inf.notes.sort(key=lambda note: next((i for i, key in enumerate(order) if note.startswith(f"{key}:")), 99))
    out = output or f"runs/{_slug(_short_model(model))}-{_slug(source_name)}"
    inf.raw = {
        "model": {"name_or_path": model_value},
        "task": chosen,
        "data": data_section,
        "card": {"inferred": list(inf.notes)},
        "output": {"dir": str(Path(out).expanduser() if Path(out).expanduser().is_absolute()
                              else (base / out).resolve())},
    }
    return inf


# ------------------------------------------------------------------------------------------------------ model

def _model_value(model: str, base: Path) -> str:
    """The model as the config names it: ``pkg:`` paths and Hub ids as given, local paths absolute."""
    if model.startswith("pkg:"):
        return model
    path = Path(model).expanduser()
    if model.startswith((".", "/", "~")) or (base / path).exists():
        return str(path if path.is_absolute() else (base / path).resolve())
    return model


def _model_config(model: str) -> Any:
    """The checkpoint's config (architectures, model type), read the way a run reads it."""
    from cardgen.config import RunConfig
    from cardgen.files import resolve_path
    from cardgen.models import auto_config

    name = resolve_path(model, Path.cwd()) if model.startswith("pkg:") else model
    return auto_config(RunConfig(model=ModelConfig(name_or_path=name)))


def _short_model(model: str) -> str:
    parts = [p for p in re.split(r"[/\\:]", model.removesuffix(".gguf")) if p]
    if not parts:
        return "model"
    return parts[-2] if parts[-1] in ("model", "checkpoint") and len(parts) > 1 else parts[-1]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.").lower()[:60] or "run"


# ------------------------------------------------------------------------------------------------------- data

def _data_section(data: str, base: Path, inf: Inference) -> tuple[dict[str, Any], pd.DataFrame, _Columns, str]:
    """data.train/validation/test or data.dataset, the train split as a frame, its columns and a display name."""
    path = Path(data).expanduser()
    path = path if path.is_absolute() else base / path
    if path.is_dir() and (path / "dataset_dict.json").is_file():
        return _dataset(str(path.resolve()), inf, path.name, local=True)
    if path.is_dir():
        files = _split_files_in(path)
        if "train" not in files:
            raise DataError(f"--data {data}: the folder holds no train file (train.csv, train.jsonl, ...)",
                            "pass --data FILE, or name the training file train.<csv|tsv|json|jsonl|parquet>")
        return _files(files, inf, path.name)
    if path.is_file():
        siblings = _split_files_in(path.parent) if _split_of(path) == "train" else {}
        files = {"train": path, **{k: v for k, v in siblings.items() if k != "train"}}
        name = path.parent.name if _split_of(path) else path.stem
        return _files(files, inf, name)
    if data.startswith((".", "/", "~")) or Path(data).suffix.lower() in FORMATS:
        raise DataError(f"data file {data} does not exist", "check --data")
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", data):
        raise DataError(f"--data {data!r} is neither an existing file or folder nor a Hub dataset id",
                        "pass a csv/tsv/json/jsonl/parquet file, a folder of split files, or NAMESPACE/NAME")
    return _dataset(data, inf, data, local=False)


def _split_of(path: Path) -> str | None:
    stem = path.stem.lower()
    return next((split for split, names in HUB_SPLIT_NAMES.items() if stem in names), None)


def _split_files_in(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for item in sorted(folder.iterdir()):
        split = _split_of(item) if item.is_file() and item.suffix.lower() in FORMATS else None
        if split and split not in found:
            found[split] = item
    return found


def _files(files: dict[str, Path], inf: Inference, name: str) -> tuple[dict[str, Any], pd.DataFrame, _Columns, str]:
    section: dict[str, Any] = {split: str(p.resolve()) for split, p in files.items()}
    for split in ("validation", "test"):
        if split in files:
            inf.note(f"data.{split}", files[split].name, f"found beside {files['train'].name}")
    _note_carved(inf, files, files["train"].name)
    frames = {split: read_table(p) for split, p in files.items()}
    return section, frames["train"], _inspect(frames["train"], None), name


def _note_carved(inf: Inference, present: Any, source: str) -> None:
    from cardgen.config import DataConfig

    d = DataConfig()
    for split, size in (("test", d.test_size), ("validation", d.validation_size)):
        if split not in present:
            inf.note(f"data.{split}", "carved out of train",
                     f"{source} has no {split} split: {size:.0%} of train, drawn with data.split_seed {d.split_seed}")


def _dataset(name: str, inf: Inference, display: str, local: bool) -> tuple[dict[str, Any], pd.DataFrame,
                                                                             _Columns, str]:
    import datasets

    try:
        dd = datasets.load_from_disk(name) if local else datasets.load_dataset(name)
    except FileNotFoundError as exc:
        raise DataError(f"dataset {name!r} was not found", "check --data, or go online for Hub ids") from exc
    except (ValueError, ConnectionError, OSError) as exc:
        from cardgen.errors import first_line

        raise DataError(f"cannot load dataset {name!r}: {first_line(exc)}", "check --data") from exc
    if not isinstance(dd, datasets.DatasetDict):
        dd = datasets.DatasetDict({"train": dd})
    present = {split: next((n for n in names if n in dd), None) for split, names in HUB_SPLIT_NAMES.items()}
    if present["train"] is None:
        raise DataError(f"dataset {name!r} has no train split (has {', '.join(dd)})",
                        "write a config with data.splits naming the splits (cardgen init, then edit it)")
    section: dict[str, Any] = {"dataset": name}
    splits = {k: v for k, v in present.items() if v}
    renamed = {k: v for k, v in splits.items() if k != v}
    if renamed:
        section["splits"] = renamed
    _note_carved(inf, splits, display)
    train = dd[splits["train"]]
    features = dict(train.features)
    frame = train.select(range(min(len(train), SAMPLE_ROWS))).to_pandas()
    return section, frame, _inspect(frame, features), display


def _inspect(frame: pd.DataFrame, features: dict[str, Any] | None) -> _Columns:
    """Sort the columns into text, label and other by their types and values."""
    sample = frame.head(SAMPLE_ROWS)
    cols = _Columns(text=[], label=[], all=[str(c) for c in frame.columns])
    for col in frame.columns:
        feature = (features or {}).get(col)
        names = getattr(feature, "names", None)
        if names:  # a datasets ClassLabel
            cols.label.append(str(col))
            cols.class_names[str(col)] = [str(n) for n in names]
            continue
        kind = _kind(sample[col].tolist())
        if kind == "text":
            cols.text.append(str(col))
        elif kind == "label":
            cols.label.append(str(col))
    return cols


def _kind(values: list[Any]) -> str:
    """"text" (free text), "label" (a few distinct short values) or "other"."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and v != v) and v != ""]
    if not present:
        return "other"
    if all(isinstance(v, str) for v in present):
        distinct = len(set(present))
        spaced = sum(" " in v.strip() for v in present) / len(present)
        mean_len = sum(len(v) for v in present) / len(present)
        if spaced >= 0.5 and distinct > min(MAX_CLASSES, len(present) // 2):
            return "text"
        if 2 <= distinct <= MAX_CLASSES and distinct < len(present) and mean_len <= 40:
            return "label"
        return "other"
    integral = all(isinstance(v, bool) or (isinstance(v, (int, float)) and float(v).is_integer()) for v in present)
    if integral and 2 <= len(set(present)) <= MAX_CLASSES and len(set(present)) < len(present):
        return "label"
    return "other"


# ------------------------------------------------------------------------------------------------------- task

def _task(task: str | None, model_config: Any, columns: _Columns, label_column: str | None,
          inf: Inference) -> str:
    """The task: as named, else from the model's architecture, else from the data."""
    if task:
        name = TASK_ALIASES.get(task, task)
        if name not in TASKS:
            from cardgen.config.schema import nearest

            raise ConfigError(f"--task must be one of {', '.join(TASKS)} (got {task!r}){nearest(task, TASKS)}",
                              "see cardgen run --help")
        return name
    archs = [str(a) for a in getattr(model_config, "architectures", None) or []]
    shown = ", ".join(archs) or getattr(model_config, "model_type", "?")
    labelled = bool(label_column or columns.label)
    qa = all(c in columns.all for c in QA_COLUMNS)
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        if labelled and not qa:
            raise ConfigError(f"the model is a causal language model ({shown}) but the data has a label column "
                              f"({label_column or ', '.join(columns.label)}): cardgen cannot tell which task you want",
                              "pass --task causal-lm to fine-tune it on the text, or --task text-classification "
                              "to train a classifier")
        inf.note("task", "causal-lm", f"the model's architecture {shown} is a causal language model")
        return "causal-lm"
    if getattr(model_config, "is_encoder_decoder", False):
        raise ConfigError(f"cannot infer a task for the encoder-decoder model {shown}", TASK_FLAG)
    if any(a.endswith("ForQuestionAnswering") for a in archs) or qa:
        why = f"the model's architecture {shown} has a question-answering head" if not qa else \
            f"the data has {', '.join(QA_COLUMNS)} columns (SQuAD format)"
        inf.note("task", "question-answering", why)
        return "question-answering"
    if any(a.endswith("ForSequenceClassification") for a in archs):
        inf.note("task", "text-classification", f"the model's architecture {shown} has a classification head")
        return "text-classification"
    if labelled:
        inf.note("task", "text-classification",
                 f"the data has a label column, and the model is an encoder without a task head: {shown}")
        return "text-classification"
    if columns.text:
        inf.note("task", "masked-lm", f"the data has text but no label column, and the model is an encoder: {shown}")
        return "masked-lm"
    raise ConfigError(f"cannot infer the task from the model ({shown}) and the data (columns: "
                      f"{', '.join(columns.all)})", TASK_FLAG)


# ---------------------------------------------------------------------------------------------------- columns

def _columns_for(task: str, columns: _Columns, frame: pd.DataFrame, section: dict[str, Any],
                 text_column: str | None, text_pair_column: str | None, label_column: str | None,
                 inf: Inference) -> dict[str, Any]:
    """data.text_column, data.text_pair_column, data.label_column and data.label_names for ``task``."""
    for flag, col in (("--text-column", text_column), ("--text-pair-column", text_pair_column),
                      ("--label-column", label_column)):
        if col is not None and col not in columns.all:
            raise DataError(f"{flag} {col!r} is not a column of the data (it has: {', '.join(columns.all)})",
                            f"pass {flag} with one of those")
    for key, flag, col in (("text_column", "--text-column", text_column),
                           ("text_pair_column", "--text-pair-column", text_pair_column),
                           ("label_column", "--label-column", label_column)):
        if col is not None:
            inf.comments[f"data.{key}"] = f"given: {flag} {col}"
    if task == "question-answering":
        return {}
    out: dict[str, Any] = {}
    label = None
    if task == "text-classification":
        label = label_column or _one(columns.label, "label", "--label-column", columns,
                                     "or --task masked-lm / causal-lm to train on the text alone")
        if not label_column:
            inf.note("data.label_column", label, "the only column with a few distinct values")
        out["label_column"] = label
    if text_column:
        text = text_column
    else:
        candidates = [c for c in columns.text if c not in (label, text_pair_column)]
        text = _one(candidates, "text", "--text-column", columns,
                    "and --text-pair-column NAME for sentence pairs")
        inf.note("data.text_column", text, "the only column of free text")
    out["text_column"] = text
    if text_pair_column:
        out["text_pair_column"] = text_pair_column
    if label is not None:
        names = columns.class_names.get(label) or _label_names(frame, label, section)
        if names:
            out["label_names"] = names
            inf.note("data.label_names", ", ".join(names), "the ClassLabel's names" if label in columns.class_names
                     else "the distinct values of the label column, sorted")
    return out


def _one(candidates: list[str], what: str, flag: str, columns: _Columns, more: str) -> str:
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ConfigError(f"no {what} column found in the data (columns: {', '.join(columns.all)})",
                          f"pass {flag} NAME{', ' + more if what == 'label' else ''}")
    raise ConfigError(f"the data has {len(candidates)} {what}-like columns ({', '.join(candidates)}): cardgen "
                      f"cannot tell which is the {what}", f"pass {flag} NAME{' ' + more if what == 'text' else ''}")


def _label_names(frame: pd.DataFrame, label: str, section: dict[str, Any]) -> list[str] | None:
    """The distinct label values over every split file, sorted (numbers by value); None for integer labels,
    whose names come from the model or are their ids."""
    values = list(frame[label].tolist())
    for split in ("validation", "test"):
        if isinstance(section.get(split), str):
            other = read_table(section[split])
            if label in other:
                values += other[label].tolist()
    present = {v for v in values if v is not None and not (isinstance(v, float) and v != v) and str(v).strip()}
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return None
    texts = sorted({str(v).strip() for v in present}, key=lambda s: (0, int(s), s) if s.lstrip("-").isdigit()
                   else (1, 0, s))
    return texts
