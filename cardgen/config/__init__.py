"""RunConfig: YAML plus ``--set`` overrides, checked where it is loaded.

Every section is a frozen dataclass (``sections`` and the feature modules beside it); ``schema`` turns YAML into
them, checking types from the annotations and limits from each class's ``_checks``. Unknown keys are errors that
name the key and suggest the nearest valid one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardgen.config.energy import EnergyConfig
from cardgen.config.eval_results import EvalResultsConfig
from cardgen.config.experiments import SearchParam, SweepConfig
from cardgen.config.gate import RequireRule, rule_problems
from cardgen.config.general import GeneralDataConfig
from cardgen.config.generation import GenerationSection, InstructionSection, Seq2SeqSection
from cardgen.config.peft import AdapterConfig
from cardgen.config.schema import apply_overrides, build, merge, nearest
from cardgen.config.sections import (
    NEW_TOKENS,
    PROMPT_LENGTH,
    TASK_ALIASES,
    TASKS,
    BenchmarkConfig,
    CardConfig,
    CompareConfig,
    DataConfig,
    EvaluationConfig,
    LMConfig,
    ModelConfig,
    OutputConfig,
    QAConfig,
    TrainingConfig,
)
from cardgen.errors import ConfigError
from cardgen.files import DuplicateKey, resolve_config_paths, unique_key_loader

__all__ = [
    "AdapterConfig", "NEW_TOKENS", "PROMPT_LENGTH", "TASKS", "TASK_ALIASES", "BenchmarkConfig", "CardConfig",
    "CompareConfig", "DataConfig", "EvalResultsConfig", "EvaluationConfig", "GenerationSection", "InstructionSection",
    "LMConfig", "ModelConfig", "OutputConfig", "QAConfig", "RunConfig", "SearchParam", "Seq2SeqSection", "SweepConfig",
    "TrainingConfig", "dump_config", "load_config", "EnergyConfig", "GeneralDataConfig", "RequireRule",
]


@dataclass(frozen=True)
class RunConfig:
    """Everything `cardgen run` needs; ``training: null`` documents a checkpoint without training it."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: str = "text-classification"
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig | None = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    card: CardConfig = field(default_factory=CardConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    qa: QAConfig = field(default_factory=QAConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)  # used by `cardgen sweep` only
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    peft: AdapterConfig | None = None  # LoRA on a frozen base instead of fine-tuning every weight
    generation: GenerationSection = field(default_factory=GenerationSection)
    seq2seq: Seq2SeqSection = field(default_factory=Seq2SeqSection)
    instruction: InstructionSection = field(default_factory=InstructionSection)
    eval_results: EvalResultsConfig = field(default_factory=EvalResultsConfig)  # opt-in .eval_results/*.yaml

    def _checks(self) -> list[tuple[str, str]]:
        if self.task not in TASKS:
            hint = nearest(self.task, TASKS)
            return [("task", f"must be one of {', '.join(TASKS)} (got {self.task!r}){hint}")]
        return rule_problems(self.task, self.compare.require, self.evaluation.split, self.data.general is not None,
                             self.compare.enabled, self.training is not None)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (what config.yaml holds)."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# Loading


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    data: dict[str, Any] | None = None,
) -> RunConfig:
    """Read a YAML config, apply ``key=value`` overrides and check every value.

    Args:
        path: The YAML file. Relative data and model paths in it are resolved against its directory.
        overrides: ``section.key=value`` strings; values are parsed as YAML (``3e-5``, ``true``, ``[a, b]``).
        data: A config as a dict instead of a file.

    Raises:
        ConfigError: naming the file, line, key or flag at fault.
    """
    import yaml

    raw: Any = {}
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist", "check the path, e.g. examples/sentiment.yaml")
        base_dir = path.resolve().parent
        try:
            raw = yaml.load(path.read_text(encoding="utf-8"), Loader=unique_key_loader()) or {}  # a SafeLoader
        except DuplicateKey as exc:
            raise ConfigError(f"{path}: key `{exc.key}` appears twice, on line {exc.first} and on line {exc.second}",
                              "keep one of them: YAML would silently use the last") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ConfigError(f"{path} is not valid YAML{where}: {problem}", "fix the YAML syntax there") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not UTF-8 text", "save the config as UTF-8") from exc
    elif data is not None:
        raw = data
    if raw is None or raw == {} and not overrides:
        where = f"{path} " if path is not None else ""
        raise ConfigError(f"the config {where}is empty",
                          "give at least model.name_or_path and data.train; examples/sentiment.yaml is a start")
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a YAML mapping of sections (model:, data:, training: ...)")
    # Paths in the file are relative to the file; paths given on the command line to the working directory.
    raw = resolve_config_paths(dict(raw), base_dir)
    raw = merge(raw, resolve_config_paths(apply_overrides({}, overrides), Path.cwd()))
    if isinstance(raw.get("task"), str):
        raw["task"] = TASK_ALIASES.get(raw["task"], raw["task"])
    if isinstance(raw.get("model"), str):  # `model: path` is shorthand for model.name_or_path
        raw["model"] = {"name_or_path": raw["model"]}
    return build(RunConfig, raw, "")


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML text."""
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)

