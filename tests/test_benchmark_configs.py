"""The configs `make bench` derives from the examples still load: a new config rule (e.g. the ship gate, which
needs a comparison) must not turn a benchmark into an exit at load time that only `make bench` would show."""

from __future__ import annotations

import sys
from pathlib import Path

from cardgen.config import load_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def test_evaluation_benchmarks_config_loads() -> None:
    import common

    cfg = common.eval_config()
    assert cfg.training is None and cfg.evaluation.batch_size == 32 and cfg.compare.require == []


def test_training_benchmark_config_loads(tmp_path: Path) -> None:
    import bench_training

    cfg = bench_training.cardgen_config(tmp_path, tmp_path / "out", 1.0, 42)
    assert cfg.training is not None and not cfg.compare.enabled and not cfg.benchmark.enabled


def test_sharded_benchmark_command_is_a_valid_run(tmp_path: Path) -> None:
    """The `cardgen run` arguments of each launch load as the run would load them (CONFIG, --no-train, --set)."""
    import bench_sharded

    for setup in (bench_sharded.SHARDED, bench_sharded.ONE_CORE_EACH):
        args, _ = bench_sharded.command(setup, tmp_path / "out", 100)
        run = args[args.index("run") + 1:]
        overrides = [run[i + 1] for i, a in enumerate(run) if a == "--set"]
        overrides += ["training=null"] if "--no-train" in run else []
        cfg = load_config(Path(run[0]), overrides)
        assert cfg.training is None and cfg.data.max_eval_samples == 100
