"""Load local files or Hub datasets, map columns, split, fingerprint and check the data.

Local files are read with pandas (csv, tsv, json, jsonl, parquet, txt) so every problem can be reported by file,
column and row; Hub datasets go through ``datasets.load_dataset``. The result is a :class:`PreparedData`: the
splits as pandas frames with normalised columns, plus the :class:`~cardgen.record.DataRecord` for run.json.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardgen.config import DataConfig
from cardgen.errors import DataError, first_line
from cardgen.record import DataRecord, SplitRecord

if TYPE_CHECKING:
    import pandas as pd

    from cardgen.config import RunConfig

SPLITS = ("train", "validation", "test")
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
}
HUB_SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "dev", "val"), "test": ("test",)}


@dataclass
class PreparedData:
    """The splits, ready for a task, and what run.json says about them."""

    frames: dict[str, pd.DataFrame]  # split name -> frame with the task's columns
    label_names: list[str]
    record: DataRecord


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 over the rows of ``frame`` in order, independent of pandas' dtypes."""
    digest = hashlib.sha256()
    for row in frame.itertuples(index=False):
        digest.update(json.dumps([_plain(v) for v in row], ensure_ascii=False, default=str).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return value


def read_table(path: str | Path, fmt: str | None = None, text_column: str = "text") -> pd.DataFrame:
    """Read one local data file into a frame.

    Raises:
        DataError: the file is missing, empty, not UTF-8, or not of a supported format.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist", "check data.train / data.validation / data.test")
    if path.is_dir():
        raise DataError(f"data file {path} is a directory", "give a file, or use data.dataset for a dataset directory")
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"unsupported data file format {path.suffix or '(no extension)'} for {path}",
            f"use one of {', '.join(sorted(set(FORMATS)))} or set data.format",
        )
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty", "give a file with a header and at least one example")
    _check_utf8(path)
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, keep_default_na=False, dtype=str)
        elif fmt == "tsv":
            frame = pd.read_csv(path, sep="\t", quoting=3, keep_default_na=False, dtype=str)
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        elif fmt == "json":
            frame = _read_json(path)
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:  # text: one example a line
            lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
            frame = pd.DataFrame({text_column: lines})
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        first = first_line(exc)
        raise DataError(f"cannot read {path} as {fmt}: {first}", "check the file's format") from exc
    if len(frame) == 0:
        raise DataError(f"data file {path} has no examples", "add rows below the header")
    return frame


def _read_json(path: Path) -> pd.DataFrame:
    import pandas as pd

    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "data" in data and isinstance(data["data"], list):
        data = data["data"]  # {"version": ..., "data": [...]}, as SQuAD-style files are laid out
    if not isinstance(data, list):
        raise ValueError("expected a list of records (or {'data': [...]})")
    return pd.DataFrame.from_records(data)


def _check_utf8(path: Path) -> None:
    if path.suffix.lower() in (".parquet", ".pq"):
        return
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line})",
            "re-save the file as UTF-8",
        ) from exc


def load_frames(cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], dict[str, str], dict[str, str]]:
    """The splits the config names, unsplit: (frames, split -> source text, file path -> sha256)."""
    frames: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    files: dict[str, str] = {}
    if cfg.dataset:
        frames, sources = _load_hub(cfg)
    for split in SPLITS:
        path = getattr(cfg, split)
        if path:
            frames[split] = read_table(path, cfg.format, cfg.text_column)
            sources[split] = str(path)
            files[str(path)] = file_sha256(Path(path))
    return frames, sources, files


def _load_hub(cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    import datasets

    name = cfg.dataset or ""
    try:
        if Path(name).is_dir() and (Path(name) / "dataset_dict.json").exists():
            dd = datasets.load_from_disk(name)
        else:
            dd = datasets.load_dataset(name, cfg.dataset_config, revision=cfg.revision)
    except FileNotFoundError as exc:
        raise DataError(f"dataset {name!r} was not found", "check data.dataset, or go online for Hub ids") from exc
    except (ValueError, ConnectionError, OSError) as exc:
        msg = first_line(exc)
        raise DataError(f"cannot load dataset {name!r}: {msg}", "check data.dataset and data.dataset_config") from exc
    frames, sources = {}, {}
    for split in SPLITS:
        wanted = cfg.splits.get(split)
        candidates = (wanted,) if wanted else HUB_SPLIT_NAMES[split]
        for cand in candidates:
            if cand in dd:
                frames[split] = dd[cand].to_pandas()
                sources[split] = f"{name}" + (f"/{cfg.dataset_config}" if cfg.dataset_config else "") + f":{cand}"
                break
        else:
            if wanted:
                raise DataError(f"dataset {name!r} has no split {wanted!r} (has {', '.join(dd)})",
                                f"fix data.splits.{split}")
    unknown = set(cfg.splits) - set(SPLITS)
    if unknown:
        raise DataError(f"unknown split name(s) in data.splits: {', '.join(sorted(unknown))}",
                        "use train, validation and test as keys")
    return frames, sources


def split_frames(
    frames: dict[str, pd.DataFrame],
    sources: dict[str, str],
    cfg: DataConfig,
    stratify_column: str | None,
    need_train: bool,
) -> dict[str, pd.DataFrame]:
    """Carve the missing validation/test splits out of train with ``cfg.split_seed``.

    The test split is carved first and never touched again, so model selection cannot see it.
    """
    from sklearn.model_selection import train_test_split

    frames = dict(frames)
    origin = dict(sources)  # each carved split names the file it came from once, not the notes of earlier carves

    def carve(source: str, target: str, size: float) -> None:
        frame = frames[source]
        n_target = max(1, round(len(frame) * size))
        if len(frame) - n_target < 1:
            raise DataError(f"split {source!r} has only {len(frame)} examples, too few to carve a {target} split",
                            f"add data.{target} or more examples")
        strat = None
        if stratify_column and stratify_column in frame:
            counts = frame[stratify_column].value_counts()
            if counts.min() >= 2 and n_target >= counts.size:
                strat = frame[stratify_column]
        rest, carved = train_test_split(frame, test_size=n_target, random_state=cfg.split_seed, stratify=strat)
        frames[source] = rest.reset_index(drop=True)
        frames[target] = carved.reset_index(drop=True)
        sources[target] = f"{origin[source]} ({size:.0%} split off with seed {cfg.split_seed})"
        sources[source] = f"{origin[source]} (rest after splits, seed {cfg.split_seed})"

    if "test" not in frames:
        if "train" not in frames:
            raise DataError("no test split and no train split to carve one from", "set data.test or data.train")
        if cfg.test_size <= 0:
            raise DataError("no test split and data.test_size is 0", "set data.test or data.test_size > 0")
        carve("train", "test", cfg.test_size)
    if need_train and "validation" not in frames:
        if "train" not in frames:
            raise DataError("training needs data.train", "set data.train, or set training: null to only evaluate")
        if cfg.validation_size <= 0:
            raise DataError("no validation split and data.validation_size is 0",
                            "set data.validation or data.validation_size > 0")
        carve("train", "validation", cfg.validation_size)
    if need_train and "train" not in frames:
        raise DataError("training needs data.train", "set data.train, or set training: null to only evaluate")
    return frames


def subsample(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """A seeded random subset of at most ``limit`` rows (all rows when ``limit`` is None)."""
    if limit is None or len(frame) <= limit:
        return frame
    return frame.sample(n=limit, random_state=seed).reset_index(drop=True)


def split_and_subsample(frames: dict[str, pd.DataFrame], sources: dict[str, str], cfg: DataConfig,
                        stratify_column: str | None, need_train: bool) -> dict[str, pd.DataFrame]:
    """:func:`split_frames`, then the train split cut to ``max_train_samples`` and the evaluation splits to
    ``max_eval_samples`` (seeded by ``split_seed``): what every task does to its normalised frames."""
    frames = split_frames(frames, sources, cfg, stratify_column, need_train)
    if "train" in frames:
        frames["train"] = subsample(frames["train"], cfg.max_train_samples, cfg.split_seed)
    for split in ("validation", "test"):
        if split in frames:
            frames[split] = subsample(frames[split], cfg.max_eval_samples, cfg.split_seed)
    return frames


def require_columns(frame: pd.DataFrame, columns: list[str], split: str, source: str) -> None:
    """Fail with the available columns when one is missing."""
    for col in columns:
        if col not in frame.columns:
            raise DataError(
                f"column {col!r} is missing from the {split} data ({source}); it has: {', '.join(map(str, frame.columns))}",
                "set data.text_column / data.label_column to the right names",
            )


def check_texts(frame: pd.DataFrame, column: str, split: str, source: str) -> None:
    """Every text must be a non-empty string."""
    values = frame[column]
    bad = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if bad:
        rows = ", ".join(str(i + 1) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise DataError(
            f"{len(bad)} empty or non-text value(s) in column {column!r} of the {split} data ({source}), rows {rows}",
            "remove those rows or fill them",
        )


def label_distribution(labels: list[int], names: list[str]) -> dict[str, int]:
    """Count of each label name, in label order."""
    counts = Counter(labels)
    return {name: int(counts.get(i, 0)) for i, name in enumerate(names)}


def token_length_stats(lengths: list[int]) -> dict[str, float]:
    """min/mean/p50/p95/max of token lengths before truncation."""
    import numpy as np

    if not lengths:
        return {}
    arr = np.asarray(lengths)
    return {
        "min": int(arr.min()),
        "mean": round(float(arr.mean()), 1),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "max": int(arr.max()),
    }


def make_split_record(name: str, frame: pd.DataFrame, source: str, **extra: Any) -> SplitRecord:
    """The run.json entry of one split."""
    return SplitRecord(name=name, num_examples=len(frame), source=source, fingerprint=frame_fingerprint(frame),
                       **extra)


def describe_source(cfg: DataConfig) -> str:
    """A short name for where the data came from."""
    if cfg.name:
        return cfg.name
    if cfg.dataset:
        return cfg.dataset if not Path(cfg.dataset).exists() else Path(cfg.dataset).name
    first = cfg.train or cfg.test or cfg.validation or "data"
    return Path(first).parent.name or Path(first).stem


def new_data_record(cfg: DataConfig, label_names: list[str], splits: dict[str, SplitRecord],
                    files: dict[str, str], label_column: str | None) -> DataRecord:
    """Assemble the DataRecord for run.json."""
    return DataRecord(
        source=describe_source(cfg),
        text_column=cfg.text_column,
        label_column=label_column,
        label_names=label_names,
        splits=splits,
        files=files,
        hub_dataset=cfg.dataset if cfg.dataset and not Path(cfg.dataset).exists() else None,
        hub_config=cfg.dataset_config,
        hub_revision=cfg.revision,
        max_length=cfg.max_length,
        hub_sha=hub_dataset_sha(cfg),
    )


def hub_dataset_sha(cfg: DataConfig) -> str | None:
    """The Hub commit of ``data.dataset`` that ``datasets`` resolved (from its cache when offline); None for local
    data, or when it cannot tell. The card's model-index names it as the dataset revision."""
    import re

    if not cfg.dataset or Path(cfg.dataset).exists():
        return None
    try:
        import datasets

        builder = datasets.load_dataset_builder(cfg.dataset, cfg.dataset_config, revision=cfg.revision)
    except (OSError, ValueError, RuntimeError, ImportError):  # the data loaded; only its commit is unknown
        return None
    sha = str(getattr(builder, "hash", "") or "")
    return sha if re.fullmatch(r"[0-9a-f]{40}", sha) else None


# ---------------------------------------------------------------------------------------------------------------
# Data report: duplicates and overlap between splits (exact, and after normalising case and whitespace)

def used_max_length(cfg: RunConfig, record: DataRecord) -> tuple[RunConfig, list[str]]:
    """When the task cut ``data.max_length`` to what the model accepts (``record.max_length`` below it): the config
    with the length actually used, so config.yaml and run.json hold it, and the warning that names both."""
    import dataclasses

    used, asked = record.max_length, cfg.data.max_length
    # a causal LM's record holds its block size (lm.block_size, checked against the limit), not a capped length
    if cfg.task == "causal-lm" or used is None or used >= asked:
        return cfg, []
    warning = (f"`data.max_length` is {asked}, above the {used} tokens the model accepts: inputs were cut to {used} "
               f"tokens, and config.yaml and run.json record max_length {used}")
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, max_length=used)), [warning]
