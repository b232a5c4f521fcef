"""Load local files or Hub datasets, map columns, split, fingerprint and check the data.

Local files are read with pandas (csv, tsv, json, jsonl, parquet, txt) so every problem can be reported by file,
column and row; Hub datasets go through ``datasets.load_dataset``. The result is a :class:`PreparedData`: the
splits as pandas frames with normalised columns, plus the :class:`~cardgen.record.DataRecord` for run.json.
"""

from __future__ import annotations

import hashlib
import json
import numbers
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
        sources[target] = f"{sources[source]} ({size:.0%} split off with seed {cfg.split_seed})"
        sources[source] = f"{sources[source]} (rest after splits, seed {cfg.split_seed})"

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
    )


# ---------------------------------------------------------------------------------------------------------------
# Data report: duplicates and overlap between splits (exact, and after normalising case and whitespace)

REPORT_EXAMPLES = 3  # texts shown per finding
REPORT_TEXT_CHARS = 120


def normalize_text(text: str) -> str:
    """Case-folded, whitespace collapsed: two texts that differ only in case or spacing normalise alike."""
    return " ".join(str(text).casefold().split())


def _normalized(texts: list[str]) -> list[str]:
    """:func:`normalize_text` of every text (inlined: one pass, no call per text; a million texts in about 1 s)."""
    return [" ".join(t.casefold().split()) for t in texts]


def _example_texts(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    texts = frame[columns[0]].astype(str).tolist()
    for col in columns[1:]:
        texts = [f"{a} [SEP] {b}" for a, b in zip(texts, frame[col].astype(str).tolist(), strict=True)]
    return texts


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= REPORT_TEXT_CHARS else text[: REPORT_TEXT_CHARS - 1].rstrip() + "…"


def _first_unique(*groups: Any, limit: int = REPORT_EXAMPLES) -> list[str]:
    """The first ``limit`` distinct texts over the groups, in order (groups are object arrays)."""
    import pandas as pd

    shown: list[str] = []
    for group in groups:
        for text in pd.unique(group[: max(limit * 50, 1000)]) if len(group) else ():
            if text not in shown:
                shown.append(text)
            if len(shown) == limit:
                return shown
        if len(group) > max(limit * 50, 1000):  # rare: the head held too few distinct texts
            shown = list(dict.fromkeys([*shown, *pd.unique(group).tolist()]))[:limit]
            if len(shown) == limit:
                return shown
    return shown


def _label_codes(labels: Any) -> Any:
    """Integer codes of the labels, equal where ``str(label)`` is equal (integer labels without converting)."""
    import numpy as np
    import pandas as pd

    values = np.asarray(labels)
    if values.dtype.kind not in "iub":
        values = np.asarray([str(x) for x in labels], dtype=object)
    return pd.factorize(values)[0].astype(np.int64)


def _duplicates(texts: list[str], labels: Any | None, normalized: set[str] | list[str] | None = None
                ) -> dict[str, Any]:
    """Duplicate rows of one split, exactly and after normalising: hash tables only, O(n).

    Args:
        texts: The split's texts.
        labels: Their labels (a conflicting duplicate carries more than one), or None.
        normalized: The set (or list) of the split's normalised texts, when the caller has it already.
    """
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(np.asarray(texts, dtype=object))
    counts = np.bincount(codes, minlength=len(uniques))
    repeated = np.flatnonzero(counts > 1)  # in order of first appearance
    conflicting = 0
    if labels is not None and len(repeated):
        rows = np.flatnonzero(counts[codes] > 1)  # only rows of repeated texts can conflict
        label_codes = _label_codes(labels)[rows]
        width = int(label_codes.max()) + 1
        pairs = np.unique(codes[rows].astype(np.int64) * width + label_codes)  # distinct (text, label)
        conflicting = int(np.count_nonzero(np.bincount(pairs // width) > 1))
    norm = set(_normalized(texts) if normalized is None else normalized)
    top = repeated[np.argsort(-counts[repeated], kind="stable")[:REPORT_EXAMPLES]]
    return {
        "rows": len(texts),
        "duplicate_rows": len(texts) - len(uniques),  # rows whose exact text appeared earlier in the split
        "duplicate_rows_normalized": len(texts) - len(norm),
        "repeated_texts": int(len(repeated)),
        "conflicting_labels": conflicting,  # repeated texts that carry more than one label
        "examples": [_short(str(uniques[i])) for i in top],
    }


def _overlap(first: str, a: set[str] | list[str], second: str, b: list[str], norm_a: set[str] | list[str] | None = None,
             norm_b: list[str] | None = None) -> dict[str, Any]:
    """Rows of split ``b`` whose text is in split ``a``, exactly and after normalising: hash tables, O(n).

    ``a`` and ``norm_a`` may be sets already (the report builds each split's once); Python's string sets beat
    pandas' ``isin`` here, which converts to Arrow strings first.
    """
    import numpy as np

    exact_a = a if isinstance(a, set) else set(a)
    norm_set = norm_a if isinstance(norm_a, set) else set(_normalized(list(a)) if norm_a is None else norm_a)
    nb = _normalized(b) if norm_b is None else norm_b
    exact = np.fromiter((t in exact_a for t in b), dtype=bool, count=len(b))
    normalized = np.fromiter((t in norm_set for t in nb), dtype=bool, count=len(nb))
    arr_b = np.asarray(b, dtype=object)
    n_norm = int(normalized.sum())
    return {
        "splits": [first, second],
        "rows": len(b),  # rows of the second split
        "exact": int(exact.sum()),  # rows of the second split whose exact text is in the first
        "normalized": n_norm,  # ... after normalising case and whitespace (includes the exact ones)
        "fraction": round(n_norm / len(b), 4) if b else 0.0,
        "examples": [_short(t) for t in _first_unique(arr_b[exact], arr_b[normalized])],
    }


def data_report(frames: dict[str, pd.DataFrame], text_columns: list[str], label_column: str | None = None,
                label_names: list[str] | None = None) -> dict[str, Any]:
    """Split sizes, label distribution, duplicates inside each split and overlap between splits, for run.json.

    Args:
        frames: Split name -> the examples as they went into the model (after splitting and subsampling).
        text_columns: The columns that make one input (a text, or a text and its pair).
        label_column: The label column, for the distribution and conflicting duplicates (None: unlabelled).
        label_names: Names of the label ids in ``label_column``.

    Returns:
        A JSON-safe dict; ``leakage`` counts the test (and validation) rows whose text is also in train,
        exactly or after normalising case and whitespace.
    """
    present = [s for s in SPLITS if s in frames] + [s for s in frames if s not in SPLITS]
    texts = {s: _example_texts(frames[s], text_columns) for s in present}
    normalized = {s: _normalized(texts[s]) for s in present}  # once per split, shared by duplicates and overlap
    norm_sets = {s: set(normalized[s]) for s in present}
    report: dict[str, Any] = {"split_sizes": {s: len(frames[s]) for s in present}}
    if label_column is not None:
        report["label_distribution"] = {}
        for s in present:
            column = frames[s][label_column]
            values = column.tolist()
            integral = column.dtype.kind in "iu" or all(isinstance(v, numbers.Integral) for v in values)
            if label_names is not None and integral:
                report["label_distribution"][s] = label_distribution([int(v) for v in values], label_names)
            else:
                report["label_distribution"][s] = dict(Counter(str(v) for v in values))
    report["duplicates"] = {
        s: _duplicates(texts[s], frames[s][label_column].to_numpy() if label_column is not None else None,
                       norm_sets[s])
        for s in present
    }
    pairs = [(a, b) for a, b in (("train", "test"), ("train", "validation"), ("validation", "test"))
             if a in texts and b in texts]
    exact_sets = {a: set(texts[a]) for a in dict.fromkeys(a for a, _ in pairs)}
    report["overlap"] = [_overlap(a, exact_sets[a], b, texts[b], norm_sets[a], normalized[b]) for a, b in pairs]
    leakage = {f"{o['splits'][1]}_in_{o['splits'][0]}": o["normalized"] for o in report["overlap"]
               if o["splits"][0] == "train"}
    report["leakage"] = {"any": any(v > 0 for v in leakage.values()), **leakage}
    return report


def leakage_warnings(report: dict[str, Any] | None) -> list[str]:
    """One warning per evaluation split that shares text with train (from :func:`data_report`), for the console
    and run.json's ``warnings``; the card says the same in its leakage notice at the top."""
    lines = []
    for o in (report or {}).get("overlap", []):
        splits = o.get("splits", [])
        if len(splits) != 2 or splits[0] != "train" or not o.get("normalized"):
            continue
        exact, total = int(o.get("exact", 0)), int(o["normalized"])
        lines.append(f"training data leaks into the {splits[1]} split: {total} of {o.get('rows', 0)} {splits[1]} "
                     f"examples ({o.get('fraction', 0.0):.1%}) also appear in the train split ({exact} exactly, "
                     f"{total - exact} more after normalising case and whitespace), so its scores are optimistic")
    return lines


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
