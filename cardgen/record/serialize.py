"""run.json: the record tree as JSON-safe data and back, written atomically, read with its schema checked."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

from cardgen.errors import OutputError
from cardgen.record.run import SCHEMA_VERSION, RunRecord

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain JSON-safe values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def from_dict(cls: type[T], data: Any) -> T:
    """Build dataclass ``cls`` from :func:`to_dict` output, recursing by type hints; unknown keys are kept out."""
    return _convert(cls, data)


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(members[0], value) if len(members) == 1 else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        kwargs = {k: _convert(hints[k], v) for k, v in value.items() if k in names}
        return tp(**kwargs)
    if origin is list:
        item = (typing.get_args(tp) or (Any,))[0]
        return [_convert(item, v) for v in value]
    if origin is dict:
        args = typing.get_args(tp)
        val_tp = args[1] if len(args) == 2 else Any
        return {k: _convert(val_tp, v) for k, v in value.items()}
    return value


def save_record(record: RunRecord, path: str | Path) -> None:
    """Write run.json atomically (temp file, then rename)."""
    from cardgen.files import atomic_write_text

    atomic_write_text(Path(path), json.dumps(to_dict(record), indent=2, ensure_ascii=False) + "\n")


def load_record(path: str | Path) -> RunRecord:
    """Read run.json, checking the schema version.

    Raises:
        OutputError: the file is missing, is not JSON, or has a newer schema than this cardgen reads.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "run.json"
    if not path.is_file():
        raise OutputError(f"no run record at {path}", "give the output directory of a `cardgen run`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise OutputError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})", "re-run `cardgen run`") from exc
    not_a_record = f"{path} is not a cardgen run record (schema {SCHEMA_VERSION})"
    hint = "give the run.json that `cardgen run` wrote, or re-run `cardgen run`"
    if not isinstance(data, dict):
        raise OutputError(f"{not_a_record}: it holds a JSON {type(data).__name__}, not an object", hint)
    major = str(data.get("schema_version", "0")).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise OutputError(
            f"{path} has schema version {data.get('schema_version')}, this cardgen reads {SCHEMA_VERSION}",
            "use the cardgen version that wrote it",
        )
    missing = [f.name for f in dataclasses.fields(RunRecord) if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and not isinstance(data.get(f.name), dict)]
    if missing:
        raise OutputError(f"{not_a_record}: `{missing[0]}` is missing or not an object", hint)
    try:
        return from_dict(RunRecord, data)
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        raise OutputError(f"{not_a_record}: {type(exc).__name__}: {exc}", hint) from exc
