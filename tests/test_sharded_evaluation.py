"""Evaluation on every process: the engine's batches dealt out across processes and gathered back in order give
exactly the one-process outputs, for every task, with plain and FSDP-sharded weights, and through ``cardgen run``."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import sentiment_rows, write_jsonl
from test_tasks_lm import build_tiny_gpt2, lm_config, lm_texts
from test_tasks_qa import qa_config, qa_rows

from cardgen.engine import planned_batches, run_engine
from cardgen.sharding import Shard, deal, has_sharded_parameters, run_shard

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORKER = Path(__file__).with_name("sharded_worker.py")
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------------------------
# The plan, the deal and the gather, without processes


@pytest.fixture(scope="module")
def classifier(tiny_bert: Path) -> tuple[Any, list[dict[str, list[int]]]]:
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    rng = random.Random(3)
    words = ["the", "movie", "was", "good", "bad", "plot", "very", "great", "not", "!"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) for _ in range(45)] + ["good"] * 3
    enc = tokenizer(texts, truncation=True, max_length=64)
    return model, [{k: enc[k][i] for k in ("input_ids", "attention_mask")} for i in range(len(texts))]


def _logits(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    return {"logits": model(**batch).logits, "width": batch["input_ids"].new_full((len(batch["input_ids"]),),
                                                                                   batch["input_ids"].shape[1])}


@pytest.mark.parametrize(("batch_size", "pack"), [(4, True), (7, True), (5, False), (100, True)])
def test_plan_is_the_batches_the_one_process_engine_runs(classifier: Any, batch_size: int, pack: bool) -> None:
    """The sharded engine computes each example in the batch it has in a one-process run: same rows, same width."""
    model, features = classifier
    seen: list[tuple[int, int]] = []

    def step(m: Any, batch: dict[str, Any]) -> dict[str, Any]:
        seen.append(tuple(batch["input_ids"].shape))  # type: ignore[arg-type]
        return _logits(m, batch)

    run_engine(model, features, step, batch_size=batch_size, pack=pack)
    lengths = [len(f["input_ids"]) for f in features]
    plan = planned_batches(lengths, batch_size, pack)
    assert seen == [(len(b), max(lengths[i] for i in b)) for b in plan]
    assert sorted(i for b in plan for i in b) == list(range(len(features)))


def test_deal_balances_padded_tokens_and_is_deterministic() -> None:
    costs = [640, 630, 600, 600, 580, 300, 120, 64, 64, 8]
    shares = deal(costs, 3)
    assert shares == deal(costs, 3) and sorted(i for s in shares for i in s) == list(range(len(costs)))
    loads = [sum(costs[i] for i in s) for s in shares]
    assert max(loads) - min(loads) <= max(costs)
    assert deal(costs, 1) == [list(range(len(costs)))]
    assert deal([5], 4) == [[0], [], [], []]  # more processes than batches: some have nothing to do


def _simulated(world: int, model: Any, features: list[dict[str, list[int]]], batch_size: int, lockstep: bool,
               monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, np.ndarray]], list[int]]:
    """run_shard on each of ``world`` ranks in turn, the gather fed with what every rank contributed."""
    import torch.distributed as dist

    from cardgen.engine import pad_batch

    lengths = [len(f["input_ids"]) for f in features]
    plan = planned_batches(lengths, batch_size)
    contributions: dict[int, Any] = {}
    calls = [0] * world

    def run_for(rank: int) -> Any:
        def run_batch(idx: Any) -> Any:
            calls[rank] += 1
            arrays = pad_batch([features[j] for j in idx], {"input_ids": 0})
            with torch.inference_mode():
                return _logits(model, {k: torch.from_numpy(v) for k, v in arrays.items()})
        return run_batch

    def record(pieces: list[Any], obj: Any, group: Any = None) -> None:
        contributions[rank] = obj
        pieces[:] = [contributions.get(r, ([], {})) for r in range(world)]

    monkeypatch.setattr(dist, "all_gather_object", record)
    for rank in range(world):  # first pass: what each rank contributes (its gather is still incomplete)
        with contextlib.suppress(RuntimeError):
            run_shard(Shard(rank, world, None), plan, lengths, run_for(rank), lockstep=lockstep)
    calls[:] = [0] * world
    results = []
    for rank in range(world):  # second pass: each rank gathers every contribution (``record`` reads ``rank``)
        results.append(run_shard(Shard(rank, world, None), plan, lengths, run_for(rank), lockstep=lockstep))
    return results, calls


@pytest.mark.parametrize("world", [2, 3])
def test_gathered_outputs_equal_the_one_process_engine(classifier: Any, world: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    model, features = classifier
    expected = run_engine(model, features, _logits, batch_size=6).outputs
    results, calls = _simulated(world, model, features, 6, False, monkeypatch)
    for outputs in results:  # every rank holds every example's outputs, in input order, bit for bit
        assert set(outputs) == {"logits", "width"}
        np.testing.assert_array_equal(outputs["logits"], expected["logits"])
        assert outputs["logits"].dtype == expected["logits"].dtype == np.float32
    lengths = [len(f["input_ids"]) for f in features]
    assert sum(calls) == len(planned_batches(lengths, 6))  # each batch ran once, somewhere
    results, calls = _simulated(world, model, features, 6, True, monkeypatch)
    assert len(set(calls)) == 1  # sharded weights: every rank makes the same number of forward passes
    np.testing.assert_array_equal(results[0]["logits"], expected["logits"])


def test_plain_models_are_not_sharded(classifier: Any) -> None:
    assert not has_sharded_parameters(classifier[0])


# ---------------------------------------------------------------------------------------------------------------
# Two processes (gloo): every task, FSDP, and `cardgen run`


def _env(threads: int = 1) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for key in ("ACCELERATE_USE_CPU", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    return env


def _torchrun(args: list[str], processes: int = 2) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env(), cwd=REPO)


@pytest.fixture(scope="module")
def spec(tiny_bert: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Configs of every task on tiny models: a linear-probe comparison, sliding windows with a stride, fixed
    masks, questions spread over several windows."""
    from conftest import base_config

    root = tmp_path_factory.mktemp("sharded")
    gpt2 = build_tiny_gpt2(root / "gpt2")
    for name, n, seed in (("train", 60, 1), ("validation", 10, 2), ("test", 30, 3)):
        write_jsonl(root / "lm" / f"{name}.jsonl", [{"text": t} for t in lm_texts(n, seed)])
        write_jsonl(root / "qa" / f"{name}.jsonl", qa_rows(n, seed, unanswerable=0.2, long_every=3))
    write_jsonl(root / "cls" / "train.jsonl", sentiment_rows(80, 1))
    classification = base_config(tiny_bert, tiny_data, root / "unused", evaluation={"batch_size": 5},
                                 compare={"enabled": True, "bootstrap_samples": 200})
    classification["data"]["train"] = str(root / "cls" / "train.jsonl")
    configs = {
        "classification": classification,
        "causal-lm": lm_config(gpt2, root / "lm", root / "unused", "causal-lm", evaluation={"batch_size": 3},
                               lm={"block_size": 16, "stride": 5, "prompts": ["The movie was"], "max_new_tokens": 4},
                               compare={"bootstrap_samples": 200}),
        "masked-lm": lm_config(tiny_bert, root / "lm", root / "unused", "masked-lm", evaluation={"batch_size": 4},
                               lm={"mask_seed": 3}, compare={"bootstrap_samples": 200}),
        "question-answering": qa_config(tiny_bert, root / "qa", root / "unused", evaluation={"batch_size": 4},
                                        qa={"version_2": True}, compare={"bootstrap_samples": 200}),
    }
    path = root / "spec.json"
    path.write_text(json.dumps(configs))
    return path


@pytest.fixture(scope="module")
def one_process(spec: Path) -> dict[str, Any]:
    out = spec.with_name("one")
    done = subprocess.run([sys.executable, str(WORKER), str(spec), str(out)], capture_output=True, text=True,
                          timeout=600, env=_env(), cwd=REPO)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(Path(f"{out}.0.json").read_text())


def _check_equal(one: dict[str, Any], out: Path) -> None:
    from safetensors.numpy import load_file

    for rank in (0, 1):  # every process ends with the whole evaluation, equal to the one-process run's
        two = json.loads(Path(f"{out}.{rank}.json").read_text())
        for name in one:
            assert two[name] == one[name], f"{name} differs on rank {rank}"
    for name in one:  # the main process alone saved each model, whole
        saved = load_file(Path(f"{out}.models") / name / "model.safetensors")
        reference = load_file(Path(f"{out.with_name('one')}.models") / name / "model.safetensors")
        assert saved.keys() == reference.keys()
        for key, value in reference.items():
            np.testing.assert_array_equal(saved[key], value)


@pytest.mark.slow
def test_two_processes_evaluate_every_task_exactly_like_one(one_process: dict[str, Any], spec: Path) -> None:
    assert one_process["classification"]["comparison"]["method"] == "linear-probe"
    assert one_process["causal-lm"]["comparison"] is not None and one_process["question-answering"]["base"]
    assert one_process["question-answering"]["evaluation"]["extra"]["num_windows"] > 30  # several per question
    out = spec.with_name("two")
    done = _torchrun([str(WORKER), str(spec), str(out)])
    assert done.returncode == 0, done.stderr[-4000:]
    _check_equal(one_process, out)


@pytest.mark.slow
def test_fsdp_sharded_weights_evaluate_exactly_like_one_process(one_process: dict[str, Any], spec: Path) -> None:
    """FSDP2 on CPU (gloo): no process holds the whole model, every forward pass needs both."""
    out = spec.with_name("fsdp")
    done = _torchrun([str(WORKER), str(spec), str(out), "--fsdp"])
    assert done.returncode == 0, done.stderr[-4000:]
    _check_equal(one_process, out)


@pytest.mark.slow
def test_torchrun_no_train_run_equals_the_one_process_run(tiny_run: Path, make_config, tmp_path: Path) -> None:
    from cardgen.record import load_record

    config = make_config(model={"name_or_path": str(tiny_run)}, training=None, evaluation={"batch_size": 5})
    args = ["-m", "cardgen", "run", str(config), "--no-train", "--json", "--quiet", "--output"]
    # one thread per process in both runs: torch's CPU kernels may round differently with another thread count
    alone = subprocess.run([sys.executable, *args, str(tmp_path / "one")], capture_output=True, text=True,
                           timeout=600, env=_env(), cwd=REPO)
    assert alone.returncode == 0, alone.stderr[-4000:]
    one = load_record(tmp_path / "one").evaluation
    out = tmp_path / "two"
    done = _torchrun([*args, str(out)])
    assert done.returncode == 0, done.stderr[-4000:]
    two = load_record(out).evaluation
    assert one is not None and two is not None
    assert two.predictions == one.predictions and two.losses == one.losses and two.metrics == one.metrics
    assert two.extra == one.extra  # padding efficiency of the same batches
    assert done.stdout.count('"test_metrics"') >= 1 and not (out / ".cardgen.lock").exists()


def test_benchmark_is_skipped_for_sharded_weights(tiny_run: Path, make_config, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """No process can time a model whose weights are split across processes: the run says so and goes on."""
    import cardgen.sharding
    from cardgen.config import load_config
    from cardgen.pipeline import run

    monkeypatch.setattr(cardgen.sharding, "has_sharded_parameters", lambda model: True)
    config = make_config(model={"name_or_path": str(tiny_run)}, training=None, benchmark={"enabled": True})
    record = run(load_config(config, [f"output.dir={tmp_path / 'run'}"])).record
    assert record.benchmark is None and record.evaluation is not None
    assert any("benchmark was skipped" in w and "cardgen bench" in w for w in record.warnings)
    assert "benchmark was skipped" in (tmp_path / "run" / "README.md").read_text()
