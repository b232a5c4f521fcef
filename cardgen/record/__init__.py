"""The run record: typed dataclasses that every stage hands to the next, and their JSON form (run.json).

The card is a pure function of :class:`RunRecord`, so a card can be re-rendered, diffed or pushed without
re-training. Nothing here imports torch or transformers. ``run`` holds the run's own records, ``evaluation`` a
model's results and the base-vs-fine-tuned comparison, ``bench`` the speed benchmark's, ``serialize`` run.json.
"""

from __future__ import annotations

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
from cardgen.record.evaluation import Comparison, EvaluationRecord, FlipExample, MetricComparison, ProbeRecord
from cardgen.record.examples import CardExample
from cardgen.record.plan import RunPlan, SplitPlan, TimeEstimate
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

__all__ = [
    "SCHEMA_VERSION", "BatchResult", "BenchmarkRecord", "BenchmarkSettings", "CardExample", "Comparison",
    "DataRecord", "EnvironmentRecord", "EpochRow", "EvalSetResult", "EvaluationRecord", "FlipExample",
    "GenerationResult", "LatencyStats", "LogPoint", "MemoryStats", "MetricComparison", "ModelBenchmark",
    "ModelRecord", "ProbeRecord", "RunPlan", "RunRecord", "SplitPlan", "SplitRecord", "TimeEstimate",
    "TrainingRecord", "from_dict", "load_record", "save_record", "to_dict",
]
