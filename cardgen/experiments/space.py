"""A sweep's search space against the config: every key must exist, take the values the space can draw, and
change what a trial trains (not the data the trials are compared on). A trial's config is the run's config with
the drawn values set, built and checked by the same schema as a config file."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union

from cardgen.config import RunConfig, SearchParam
from cardgen.config.schema import build, merge, nearest
from cardgen.errors import ConfigError

SEARCHABLE = ("training", "data", "lm", "qa")
# Keys whose change would move the yardstick: the objective, the validation data, or the experiment itself.
FIXED = {
    "training.seeds": "use sweep.then_seeds to retrain the best settings on several seeds",
    "training.metric_for_best_model": "it is the objective every trial is scored by",
    "training.keep_checkpoints": "it changes no trained model",
    **{f"data.{k}": "it changes the validation or test data the trials are compared on" for k in (
        "dataset", "dataset_config", "revision", "validation", "test", "splits", "format", "text_column",
        "text_pair_column", "label_column", "label_names", "validation_size", "test_size", "split_seed",
        "max_eval_samples", "name")},
}
DATA_SECTIONS = ("data", "lm", "qa")  # keys that change how the data is prepared


def _unwrap(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return members[0] if len(members) == 1 else tp
    return tp


def check_key(key: str) -> None:
    """Raise a ConfigError when ``key`` is no config key a trial can change."""
    where = f"`sweep.space` key `{key}`"
    parts = key.split(".")
    if parts[0] not in SEARCHABLE or len(parts) < 2:
        names = [f.name for f in dataclasses.fields(RunConfig)]
        if parts[0] not in names:
            raise ConfigError(f"{where} is not a config key{nearest(parts[0], names)}",
                              f"search keys of the sections {', '.join(SEARCHABLE)}, e.g. training.learning_rate")
        raise ConfigError(f"{where} cannot be searched: only {', '.join(s + '.*' for s in SEARCHABLE)} keys change "
                          "what a trial trains", "remove it from sweep.space")
    if key in FIXED:
        raise ConfigError(f"{where} cannot be searched: {FIXED[key]}", "remove it from sweep.space")
    cls: Any = RunConfig
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            section = ".".join(parts[:i])
            raise ConfigError(f"{where} is not a config key{nearest(part, names)}",
                              f"valid keys in `{section}`: {', '.join(names)}")
        tp = _unwrap(hints[part])
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(tp):
                raise ConfigError(f"{where} is a section, not a value", "name one of its keys")
            return
        if typing.get_origin(tp) is dict:
            return  # a free-form mapping (training.extra_args.<name>): checked by transformers
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"{where} is not a config key: `{'.'.join(parts[:i + 1])}` is a value, not a section",
                              "remove the rest of the key")
        cls = tp


def nested(key: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": value}}`` for key ``a.b``."""
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return dict(out)


def apply(cfg: RunConfig, params: dict[str, Any]) -> RunConfig:
    """``cfg`` with ``params`` (config key -> value) set, built and checked like a config file."""
    raw = cfg.to_dict()
    for key, value in params.items():
        raw = merge(raw, nested(key, value))
    return typing.cast(RunConfig, build(RunConfig, raw, ""))


def candidates(param: SearchParam) -> list[Any]:
    """Values that reach every edge of ``param``'s range: each is tried against the schema up front."""
    if param.type == "categorical":
        return list(param.choices)
    assert param.low is not None and param.high is not None
    if param.type == "int":
        return [int(param.low), int(param.high)]
    return [float(param.low), float(param.high)]


def check_space(cfg: RunConfig, task: Any) -> list[SearchParam]:
    """The space of ``cfg.sweep`` as typed entries, each key and edge value checked against the config.

    Raises:
        ConfigError: naming the ``sweep.space`` key at fault.
    """
    params = cfg.sweep.params()
    if not params:
        raise ConfigError("`sweep.space` is empty: there is nothing to search",
                          "add keys, e.g. sweep.space: {training.learning_rate: {type: log-uniform, low: 1.0e-5, "
                          "high: 1.0e-4}}")
    if cfg.training is None:
        raise ConfigError("a sweep needs training, but the config has none (training: null)",
                          "add a training section")
    if cfg.training.seeds:
        raise ConfigError("`training.seeds` and a sweep do not combine: each trial trains one seed",
                          "set sweep.then_seeds to retrain the best settings on several seeds")
    for param in params:
        check_key(param.key)
        if param.key.split(".")[0] in DATA_SECTIONS and hasattr(task, "evaluate_base") and cfg.compare.enabled:
            raise ConfigError(f"`sweep.space` key `{param.key}` changes the data, but {cfg.task} evaluates its "
                              "base model before training, on the run's data",
                              "search training.* keys only, or set compare.enabled: false")
        for value in candidates(param):
            try:
                apply(cfg, {param.key: value})
            except ConfigError as exc:
                raise ConfigError(f"`sweep.space` key `{param.key}` draws {value!r}, which the config refuses: "
                                  f"{exc.message}", "narrow the range or fix the choices") from exc
    return params


def suggest(trial: Any, param: SearchParam) -> Any:
    """Draw ``param`` from an optuna trial (the parameter is named by its config key)."""
    if param.type == "categorical":
        return trial.suggest_categorical(param.key, list(param.choices))
    assert param.low is not None and param.high is not None
    if param.type == "int":
        return trial.suggest_int(param.key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    if param.type == "log-uniform":
        return trial.suggest_float(param.key, float(param.low), float(param.high), log=True)
    return trial.suggest_float(param.key, float(param.low), float(param.high), step=param.step)
