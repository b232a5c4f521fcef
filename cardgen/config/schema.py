"""YAML to frozen dataclasses: overrides, type coercion by annotation, limits by ``_checks``, nearest-key hints.

Generic: nothing here knows the sections. Unknown keys are errors that name the key and suggest the nearest one;
every error names the key or flag at fault, e.g. "`training.learning_rate` must be > 0 (got -1)".
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union

from cardgen.errors import ConfigError


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    import yaml

    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is not key=value", "write e.g. --set training.learning_rate=3e-5")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: cannot parse value {text!r}", "quote the value") from exc
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
            node[part] = dict(child)
            node = node[part]
        node[parts[-1]] = value
    return raw


def nearest(key: str, choices: typing.Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the config"
    if not isinstance(raw, dict):
        raise ConfigError(f"`{where}` must be a mapping (got {type(raw).__name__})")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(
                f"unknown key `{prefix}{key}`{nearest(str(key), names)}",
                f"valid keys in `{where}`: {', '.join(names)}",
            )
    kwargs = {key: coerce(hints[key], value, f"{prefix}{key}") for key, value in raw.items()}
    obj = cls(**kwargs)
    # Sections left out of the config hold their defaults, which must pass the same checks (model.name_or_path
    # and data.train have no usable default).
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        if f.name not in raw and dataclasses.is_dataclass(value):
            check(value, f"{prefix}{f.name}.")
    check(obj, prefix)
    return obj


def check(obj: Any, prefix: str) -> None:
    for key, message in obj._checks() if hasattr(obj, "_checks") else []:
        if message.startswith("is required: "):
            raise ConfigError(f"the config has no `{prefix}{key}`: {message.removeprefix('is required: ')}",
                              f"add `{prefix}{key}` to the config, or pass --set {prefix}{key}=...")
        raise ConfigError(f"`{prefix}{key}` {message}", "fix it in the config or with --set")


def type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(inner[0], value, key)
    if value is None:
        raise ConfigError(f"`{key}` must not be empty", "give a value or remove the key to use the default")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, key + ".")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"`{key}` must be one of {', '.join(map(str, args))} (got {value!r})")
        return value
    if origin is list:
        if not isinstance(value, list):
            value = [value] if isinstance(value, (str, int, float)) else value
        if not isinstance(value, list):
            raise ConfigError(f"`{key}` must be a list (got {type(value).__name__})")
        return [coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"`{key}` must be a mapping (got {type(value).__name__})")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"`{key}` must be true or false (got {value!r})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"`{key}` must be an integer (got {value!r})")
        return value
    if tp is float:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)  # YAML 1.1 reads 3e-5 as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"`{key}` must be a number (got {value!r})")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"`{key}` must be a string (got {value!r})")
        return str(value)
    if tp is Any:
        return value
    raise ConfigError(f"`{key}` has unsupported type {type_name(tp)}")  # pragma: no cover
