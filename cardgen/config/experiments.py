"""The ``sweep:`` section (issue 16): a hyperparameter search over config keys, run by ``cardgen sweep``.

A search space maps config keys to distributions::

    sweep:
      trials: 6
      space:
        training.learning_rate: {type: log-uniform, low: 1.0e-5, high: 2.0e-4}
        training.warmup: {type: uniform, low: 0.0, high: 0.2}
        training.train_batch_size: {type: categorical, choices: [16, 32]}
        training.num_epochs: {type: int, low: 1, high: 3}

Whether each key exists in the config (and takes the values) is checked against RunConfig by
``cardgen.experiments.space``; here only the shape of each entry is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

PARAM_TYPES = ("log-uniform", "uniform", "int", "categorical")
PARAM_FIELDS = {"type", "low", "high", "step", "log", "choices"}


@dataclass(frozen=True)
class SearchParam:
    """One searched config key and its distribution."""

    key: str  # dotted config key, e.g. "training.learning_rate"
    type: str  # one of PARAM_TYPES
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False  # int only: sample on a log scale
    choices: tuple[Any, ...] = ()


def parse_param(key: str, spec: Any) -> tuple[SearchParam | None, str | None]:
    """A space entry as a :class:`SearchParam`, or (None, what is wrong with it)."""
    if not isinstance(spec, dict):
        return None, ("must be a mapping such as {type: log-uniform, low: 1.0e-5, high: 1.0e-4} "
                      f"(got {spec!r})")
    unknown = sorted(set(map(str, spec)) - PARAM_FIELDS)
    if unknown:
        return None, f"has unknown field `{unknown[0]}` (fields: {', '.join(sorted(PARAM_FIELDS))})"
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        return None, f"`type` must be one of {', '.join(PARAM_TYPES)} (got {kind!r})"
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            return None, "needs `choices`: a non-empty list"
        if any(not isinstance(c, (str, int, float, bool)) and c is not None for c in choices):
            return None, "`choices` must be numbers, strings, booleans or null"
        if len({repr(c) for c in choices}) != len(choices):
            return None, "`choices` must not repeat a value"
        return SearchParam(key=key, type=kind, choices=tuple(choices)), None
    numbers = {}
    for bound in ("low", "high", "step"):
        value = spec.get(bound)
        if isinstance(value, str):
            try:
                value = float(value)  # YAML 1.1 reads 1e-5 as a string
            except ValueError:
                return None, f"`{bound}` must be a number (got {value!r})"
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return None, f"`{bound}` must be a number (got {value!r})"
        numbers[bound] = value
    low, high, step = numbers["low"], numbers["high"], numbers["step"]
    if low is None or high is None:
        return None, f"a {kind} range needs `low` and `high`"
    if not low < high:
        return None, f"`low` must be below `high` (got {low} and {high})"
    if kind == "log-uniform" and low <= 0:
        return None, f"a log-uniform range needs `low` > 0 (got {low})"
    if kind == "int" and (low != int(low) or high != int(high) or (step is not None and step != int(step))):
        return None, f"an int range needs whole numbers (got {low}, {high})"
    if step is not None and (step <= 0 or kind == "log-uniform"):
        return None, "`step` must be > 0, and a log-uniform range takes none"
    log = spec.get("log", False)
    if not isinstance(log, bool) or (log and kind != "int"):
        return None, "`log` is true or false and only for int ranges (use type: log-uniform for floats)"
    if log and (low <= 0 or step not in (None, 1)):
        return None, f"a log-scale int range needs `low` >= 1 and no `step` (got low {low}, step {step})"
    return SearchParam(key=key, type=kind, low=low, high=high, step=step, log=log), None


@dataclass(frozen=True)
class SweepConfig:
    """A hyperparameter search (``cardgen sweep``): optuna's seeded TPE sampler, pruning on the per-epoch
    validation metric, the study in an SQLite file in the output directory (or any optuna RDB URL)."""

    space: dict[str, Any] = field(default_factory=dict)  # config key -> {type, low, high, step, log, choices}
    trials: int | None = None  # how many finished trials the study should hold (`--trials` overrides)
    seed: int = 0  # the TPE sampler's seed
    startup_trials: int | None = None  # random trials before TPE models the space (default: trials // 3, 1..10)
    pruner: Literal["median", "none"] = "median"
    prune_after_trials: int = 2  # finished trials before the median pruner may stop another
    storage: str | None = None  # optuna RDB URL; default sqlite:///<output dir>/study.db
    study_name: str | None = None  # default: card.model_name, else the output directory's name
    then_seeds: int | None = None  # retrain the best settings on this many seeds (training.seed, +1, ...)

    def params(self) -> list[SearchParam]:
        """The space as typed entries (``_checks`` has vetted them)."""
        return [p for key, spec in self.space.items() if (p := parse_param(str(key), spec)[0]) is not None]

    def _checks(self) -> list[tuple[str, str]]:
        errors = []
        for key, spec in self.space.items():
            problem = parse_param(str(key), spec)[1]
            if problem:
                errors.append((f"space.{key}", problem))
        if self.trials is not None and self.trials < 1:
            errors.append(("trials", f"must be >= 1 (got {self.trials})"))
        if self.startup_trials is not None and self.startup_trials < 1:
            errors.append(("startup_trials", f"must be >= 1 (got {self.startup_trials})"))
        if self.prune_after_trials < 1:
            errors.append(("prune_after_trials", f"must be >= 1 (got {self.prune_after_trials})"))
        if self.then_seeds is not None and self.then_seeds < 2:
            errors.append(("then_seeds", f"must be >= 2 (got {self.then_seeds}); leave it out for no retraining"))
        return errors
