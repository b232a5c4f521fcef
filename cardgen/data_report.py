"""The data checks of a run: duplicates within each split and text shared between splits (train/test leakage),
by hashing normalised texts (no O(n^2)), and the warnings they give."""

from __future__ import annotations

import numbers
from collections import Counter
from typing import TYPE_CHECKING, Any

from cardgen.data import SPLITS, label_distribution

if TYPE_CHECKING:
    import pandas as pd



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
