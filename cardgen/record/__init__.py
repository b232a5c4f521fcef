"""The run record: typed dataclasses that every stage hands to the next, and their JSON form (run.json).

The card is a pure function of :class:`RunRecord`, so a card can be re-rendered, diffed or pushed without
re-training. Nothing here imports torch or transformers. ``run`` holds the run's own records, ``evaluation`` a
model's results and the base-vs-fine-tuned comparison, ``bench`` the speed benchmark's, ``serialize`` run.json.
"""

from __future__ import annotations

from cardgen.record.adapter import AdapterRecord, ResourcesRecord
from cardgen.record.bench import (
    BatchResult,
    BenchmarkRecord,
    BenchmarkSettings,
    EvalSetResult,
    GenerationResult,
    LatencyStats,
    MemoryStats,
    ModelBenchmark,
)
from cardgen.record.curve import LogPoint
from cardgen.record.energy import EnergyRecord, StageEnergy
from cardgen.record.evaluation import Comparison, EvaluationRecord, FlipExample, MetricComparison, ProbeRecord
from cardgen.record.examples import CardExample
from cardgen.record.experiments import (
    ExperimentsRecord,
    SearchSpaceEntry,
    SeedRun,
    SeedsRecord,
    SpreadStats,
    SweepRecord,
    SweepTrial,
)
from cardgen.record.general import GeneralRecord
from cardgen.record.generation import GenerationComparison, GenerationExample, GenerationOutputs
from cardgen.record.plan import RunPlan, SplitPlan, TimeEstimate
from cardgen.record.reproduce import Change, DriftRow, ReproduceReport
from cardgen.record.run import (
    SCHEMA_VERSION,
    DataRecord,
    EnvironmentRecord,
    EpochRow,
    ModelRecord,
    RunRecord,
    SplitRecord,
    TrainingRecord,
)
from cardgen.record.serialize import from_dict, load_record, save_record, to_dict
from cardgen.record.verdict import RuleResult, Verdict

__all__ = [
    "SCHEMA_VERSION", "AdapterRecord", "ResourcesRecord", "BatchResult", "BenchmarkRecord", "BenchmarkSettings",
    "CardExample", "Comparison", "DataRecord", "EnvironmentRecord", "EpochRow", "EvalSetResult", "EvaluationRecord",
    "FlipExample", "GenerationComparison", "GenerationExample", "GenerationOutputs", "GenerationResult",
    "LatencyStats", "LogPoint", "MemoryStats", "MetricComparison", "ModelBenchmark", "ModelRecord", "ProbeRecord",
    "RunPlan", "RunRecord", "SplitPlan", "SplitRecord", "TimeEstimate",
    "TrainingRecord", "from_dict", "load_record", "save_record", "to_dict",
    "ExperimentsRecord", "SearchSpaceEntry", "SeedRun", "SeedsRecord", "SpreadStats", "SweepRecord", "SweepTrial",
    "Change", "DriftRow", "EnergyRecord", "GeneralRecord", "ReproduceReport", "RuleResult", "StageEnergy", "Verdict",
]
