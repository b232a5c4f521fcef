"""The benchmark stage: exact statistics, the measuring loop, timer choice, memory, and interleaved rounds."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from itertools import groupby

import numpy as np
import pytest

from cardgen.bench import inputs as bench_inputs
from cardgen.bench import timing
from cardgen.bench.inputs import autocast_dtype
from cardgen.bench.scenarios import benchmark_generation, benchmark_models
from cardgen.bench.timing import (
    CpuTimer,
    CudaTimer,
    MemoryTracker,
    latency_stats,
    make_timer,
    measure,
    time_call,
)
from cardgen.errors import ConfigError, ModelError
from cardgen.models import size_on_disk
from cardgen.record import BenchmarkRecord

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (
    [
        "the",
        "a",
        "good",
        "bad",
        "movie",
        "film",
        "was",
        "is",
        "great",
        "awful",
        "not",
        "very",
        "plot",
        "actor",
        "scene",
        "fun",
        "dull",
    ]
)
TEXTS = ["the movie was good", "a very dull plot", "great actor", "the film is not fun at all, very bad"]


# --------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tokenizer():
    return transformers.BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})


def _tiny_bert(seed: int):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def bert_pair(tokenizer):
    return {"base": (_tiny_bert(0), tokenizer), "finetuned": (_tiny_bert(1), tokenizer)}


class FakeTimer:
    """Returns the given durations one by one; counts reads."""

    name = "fake"

    def __init__(self, durations):
        self.durations = list(durations)
        self.reads = 0

    def start(self):
        pass

    def stop(self):
        pass

    def elapsed(self):
        self.reads += 1
        return self.durations.pop(0) if self.durations else 0.0


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


# --------------------------------------------------------------------------------------------------- statistics
def test_latency_stats_exact_on_a_grid():
    seconds = [float(i) for i in range(101)]  # 0..100: every percentile lands on a value
    stats = latency_stats(seconds, batch_size=4, tokens_per_batch=256)
    assert stats.count == 101
    assert stats.mean_s == 50.0
    assert (stats.p50_s, stats.p90_s, stats.p99_s) == (50.0, 90.0, 99.0)
    assert (stats.min_s, stats.max_s, stats.total_s) == (0.0, 100.0, 5050.0)
    assert stats.per_sample_mean_s == 12.5
    assert stats.samples_per_s == 4 / 50
    assert stats.tokens_per_s == 256 / 50
    # sample variance of 0..n-1 is n(n+1)/12 with n = 101
    assert stats.std_s == pytest.approx(math.sqrt(101 * 102 / 12), rel=1e-13)
    assert stats.seconds == seconds


def test_latency_stats_linear_interpolation_and_order_independence():
    seconds = [8.0, 1.0, 4.0, 2.0]  # sorted: 1, 2, 4, 8
    stats = latency_stats(seconds, batch_size=1)
    # rank (n - 1) * q / 100 between its neighbours
    assert stats.p50_s == 3.0  # rank 1.5: 2 + 0.5 * (4 - 2)
    assert stats.p90_s == pytest.approx(4 + 0.7 * (8 - 4), rel=1e-14)  # rank 2.7
    assert stats.p99_s == pytest.approx(4 + 0.97 * (8 - 4), rel=1e-14)  # rank 2.97
    assert stats.mean_s == 3.75
    assert stats.tokens_per_batch is None and stats.tokens_per_s is None
    assert stats.seconds == seconds  # recorded in call order


def test_latency_stats_single_value_and_bad_input():
    stats = latency_stats([0.5], batch_size=2)
    assert stats.std_s == 0.0
    assert stats.p50_s == stats.p99_s == stats.min_s == stats.max_s == 0.5
    assert stats.samples_per_s == 4.0
    with pytest.raises(ValueError):
        latency_stats([], batch_size=1)
    with pytest.raises(ValueError):
        latency_stats([1.0], batch_size=0)
    with pytest.raises(ValueError):
        latency_stats([1.0, -0.1], batch_size=1)


# --------------------------------------------------------------------------------------------------- measure
def test_measure_runs_warmup_untimed_then_min_iterations():
    fn, timer = Counter(), FakeTimer([10.0] * 100)
    seconds = measure(fn, warmup=3, min_iterations=5, min_seconds=0.0, timer=timer)
    assert seconds == [10.0] * 5
    assert fn.calls == 8  # 3 warm-up + 5 timed
    assert timer.reads == 5  # warm-up calls are not timed


def test_measure_keeps_going_until_min_seconds():
    fn = Counter()
    seconds = measure(fn, warmup=0, min_iterations=2, min_seconds=2.0, timer=FakeTimer([0.25] * 100))
    assert seconds == [0.25] * 8  # 8 * 0.25 = 2.0 exactly
    assert fn.calls == 8


def test_measure_needs_both_minimums():
    # seconds met after 1 call, iterations not yet
    assert (
        len(measure(Counter(), warmup=0, min_iterations=4, min_seconds=1.0, timer=FakeTimer([5.0] * 9))) == 4
    )
    # iterations met after 4 calls, seconds not yet
    timings = [0.1, 0.1, 0.1, 0.1, 0.5, 0.5]
    assert (
        measure(Counter(), warmup=0, min_iterations=4, min_seconds=1.0, timer=FakeTimer(timings)) == timings
    )


def test_measure_cap_and_validation():
    assert (
        len(
            measure(
                Counter(), warmup=0, min_iterations=1, min_seconds=1.0, timer=FakeTimer([]), max_iterations=7
            )
        )
        == 7
    )
    for kwargs in ({"warmup": -1}, {"min_iterations": 0}, {"min_seconds": -1.0}, {"min_seconds": math.inf}):
        with pytest.raises(ConfigError):
            measure(Counter(), timer=FakeTimer([1.0]), **kwargs)


def test_measure_with_the_real_cpu_timer():
    fn = Counter()
    seconds = measure(fn, warmup=1, min_iterations=3, min_seconds=0.0, device="cpu")
    assert len(seconds) == 3 and all(s >= 0 for s in seconds)
    assert fn.calls == 4


def test_time_call_times_one_call():
    fn = Counter()
    assert time_call(fn, timer=FakeTimer([0.125])) == 0.125
    assert fn.calls == 1


# --------------------------------------------------------------------------------------------------- timers
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1", torch.device("cuda:0"), torch.device("cuda")])
def test_cuda_timer_is_chosen_for_cuda_devices(device):
    timer = make_timer(device)  # building it must not touch CUDA
    assert isinstance(timer, CudaTimer)
    assert timer.name == "cuda-events"


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "mps", "meta"])
def test_cpu_timer_elsewhere(device):
    assert isinstance(make_timer(device), CpuTimer)


def test_measure_uses_the_cuda_timer_on_cuda(monkeypatch):
    made = []

    class RecordingTimer(FakeTimer):
        def __init__(self, device):
            super().__init__([1.0] * 10)
            made.append(device)

    monkeypatch.setattr(timing, "CudaTimer", RecordingTimer)
    monkeypatch.setattr(timing, "synchronize", lambda device: None)
    assert measure(Counter(), warmup=0, min_iterations=2, min_seconds=0.0, device="cuda:0") == [1.0, 1.0]
    assert made == ["cuda:0"]


def test_cpu_timer_measures_a_sleep():
    timer = CpuTimer()
    timer.start()
    time.sleep(0.01)
    timer.stop()
    assert timer.elapsed() >= 0.009


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_events_time_gpu_work(bert_pair):
    x = torch.randn(2048, 2048, device="cuda")
    seconds = measure(lambda: x @ x, warmup=2, min_iterations=5, min_seconds=0.0, device="cuda")
    assert len(seconds) == 5 and all(s > 0 for s in seconds)
    models = {name: (_tiny_bert(i).to("cuda"), tok) for i, (name, (_, tok)) in enumerate(bert_pair.items())}
    record = benchmark_models(
        models,
        batch_sizes=[2],
        sequence_length=16,
        warmup=1,
        min_iterations=3,
        min_seconds=0.0,
        precision="fp16",
        rounds=2,
    )
    assert record.settings.timer == "cuda-events"
    assert record.settings.autocast_dtype == "float16"
    memory = record.models["base"].batches[0].memory
    assert memory.cuda_max_allocated_bytes > 0
    assert memory.cuda_max_reserved_bytes >= memory.cuda_max_allocated_bytes


# --------------------------------------------------------------------------------------------------- memory
def test_memory_tracker_sees_an_allocation():
    with MemoryTracker("cpu") as tracker:
        block = np.ones(8 * 1024 * 1024)  # 64 MiB, touched
        time.sleep(0.05)  # several sampling intervals
        del block
    stats = tracker.result()
    assert stats.rss_delta_bytes >= 32 * 1024 * 1024
    assert stats.rss_peak_bytes >= stats.rss_baseline_bytes + stats.rss_delta_bytes
    assert stats.cuda_max_allocated_bytes is None
    assert "psutil" in stats.method


def test_size_on_disk_counts_files_not_subfolders(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "config.json").write_bytes(b"{}")
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "optimizer.pt").write_bytes(b"y" * 5000)
    assert size_on_disk(tmp_path) == 1002
    assert size_on_disk(tmp_path / "model.safetensors") == 1000
    with pytest.raises(ModelError):
        size_on_disk(tmp_path / "missing")


# --------------------------------------------------------------------------------------------------- precision
def test_precision_choices(monkeypatch):
    assert autocast_dtype("fp32", "cpu") is None
    assert autocast_dtype("fp16", "cuda") is torch.float16
    with pytest.raises(ConfigError, match="precision"):
        autocast_dtype("int8", "cpu")
    with pytest.raises(ConfigError, match="fp16"):
        autocast_dtype("fp16", "cpu")
    monkeypatch.setattr(bench_inputs, "_cpu_has_native_bf16", lambda: False)
    with pytest.raises(ConfigError, match="bf16"):
        autocast_dtype("bf16", "cpu")
    monkeypatch.setattr(bench_inputs, "_cpu_has_native_bf16", lambda: True)
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16


# --------------------------------------------------------------------------------------------------- models
def _record_calls(models):
    calls: list[str] = []
    handles = [
        model.register_forward_pre_hook(lambda *_, n=name: calls.append(n))
        for name, (model, _) in models.items()
    ]
    return calls, handles


def test_benchmark_models_interleaves_and_covers_every_batch_size(bert_pair):
    calls, handles = _record_calls(bert_pair)
    try:
        record = benchmark_models(
            bert_pair,
            batch_sizes=[1, 4],
            sequence_length=16,
            warmup=1,
            min_iterations=4,
            min_seconds=0.0,
            rounds=3,
            load_s={"base": 1.5},
        )
    finally:
        for h in handles:
            h.remove()
    assert set(record.models) == {"base", "finetuned"}
    for entry in record.models.values():
        assert [b.batch_size for b in entry.batches] == [1, 4]
        assert entry.num_parameters == sum(p.numel() for p in bert_pair["base"][0].parameters())
        for batch in entry.batches:
            assert batch.latency.count >= 4
            assert batch.sequence_length == 16
            assert batch.tokens_per_batch == batch.batch_size * 16
            assert batch.latency.tokens_per_batch == batch.tokens_per_batch
            assert batch.cold_s > 0
            assert batch.memory.rss_peak_bytes > 0
    assert record.models["base"].load_s == 1.5 and record.models["finetuned"].load_s is None
    # per batch size: (cold + warm-up) base, finetuned, then 3 rounds of base, finetuned
    blocks = [name for name, _ in groupby(calls)]
    assert blocks == ["base", "finetuned"] * 4 * 2
    # cold 1 + warm-up 1 + 3 rounds of (1 re-warm + ceil(4 / 3) = 2 timed), per model and batch size
    assert calls.count("base") == 2 * (1 + 1 + 3 * (1 + 2))
    s = record.settings
    assert (s.device, s.timer, s.precision, s.autocast_dtype, s.compile) == (
        "cpu",
        "perf_counter",
        "fp32",
        None,
        False,
    )
    assert s.torch_threads == torch.get_num_threads() and s.torch_version == torch.__version__
    assert s.transformers_version == transformers.__version__
    assert (s.batch_sizes, s.sequence_length, s.inputs, s.rounds) == ([1, 4], 16, "synthetic", 3)
    # JSON-serialisable as it stands
    assert (
        json.loads(json.dumps(dataclasses.asdict(record)))["models"]["base"]["batches"][1]["batch_size"] == 4
    )
    assert isinstance(record, BenchmarkRecord)


def test_both_models_see_the_same_synthetic_ids(bert_pair):
    seen: dict[str, list] = {}
    handles = [
        model.register_forward_pre_hook(
            lambda _m, _a, kwargs, n=name: seen.setdefault(n, []).append(kwargs["input_ids"].clone()),
            with_kwargs=True,
        )
        for name, (model, _) in bert_pair.items()
    ]
    try:
        benchmark_models(
            bert_pair,
            batch_sizes=[3],
            sequence_length=8,
            warmup=0,
            min_iterations=1,
            min_seconds=0.0,
            rounds=1,
        )
    finally:
        for h in handles:
            h.remove()
    assert torch.equal(seen["base"][0], seen["finetuned"][0])
    assert seen["base"][0].shape == (3, 8)
    assert int(seen["base"][0].max()) < len(WORDS)  # within the smallest vocabulary (the tokenizer's)


def test_benchmark_models_on_texts(bert_pair):
    record = benchmark_models(
        bert_pair,
        batch_sizes=[2, 5],
        sequence_length=6,
        warmup=0,
        min_iterations=2,
        min_seconds=0.0,
        rounds=1,
        inputs=TEXTS,
    )
    assert record.settings.inputs == "texts"
    batches = record.models["base"].batches
    assert batches[0].sequence_length == 6  # the second text is 4 words + 2 special tokens
    assert batches[0].tokens_per_batch == 6 + 6
    assert batches[1].tokens_per_batch < 5 * 6  # padding is not counted


def test_checkpoint_size_and_device_checks(tmp_path, tokenizer):
    model = _tiny_bert(2)
    model.save_pretrained(tmp_path)
    reloaded = transformers.BertForSequenceClassification.from_pretrained(tmp_path)
    record = benchmark_models(
        {"saved": (reloaded, tokenizer), "fresh": (model, tokenizer)},
        batch_sizes=[1],
        sequence_length=4,
        warmup=0,
        min_iterations=1,
        min_seconds=0.0,
        rounds=1,
    )
    assert record.models["saved"].size_on_disk_bytes == size_on_disk(tmp_path) > 0
    with pytest.raises(ModelError, match="different devices"):
        benchmark_models({"a": (model, None), "b": (_tiny_bert(3).to("meta"), None)}, batch_sizes=[1])
    with pytest.raises(ConfigError, match="batch_sizes"):
        benchmark_models({"a": (model, None)}, batch_sizes=[0])


def test_benchmark_generation_fixed_token_count():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    models = {
        "base": (transformers.LlamaForCausalLM(config), None),
        "finetuned": (transformers.LlamaForCausalLM(config), None),
    }
    record = benchmark_generation(
        models,
        batch_size=2,
        prompt_length=8,
        new_tokens=4,
        warmup=0,
        min_iterations=2,
        min_seconds=0.0,
        rounds=2,
    )
    for entry in record.models.values():
        (gen,) = entry.generation
        assert (gen.batch_size, gen.prompt_length, gen.new_tokens) == (2, 8, 4)
        assert gen.time_to_first_token.count >= 2 and gen.generate.count >= 2
        assert gen.generate.tokens_per_batch == 8
        assert gen.decode_tokens_per_s is None or gen.decode_tokens_per_s > 0
    with pytest.raises(ConfigError, match="new_tokens"):
        benchmark_generation(models, new_tokens=1)


def test_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, cardgen.bench.scenarios; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------------- run stage
def test_run_with_benchmark_puts_speed_and_size_in_the_card_for_both_models(make_config, tmp_path):
    from cardgen.card.render import render_card
    from cardgen.config import load_config
    from cardgen.pipeline import run
    from cardgen.record import BenchmarkRecord, load_record

    cfg = load_config(make_config(
        benchmark={"enabled": True, "batch_sizes": [1, 4], "sequence_length": 16, "warmup": 1,
                   "min_iterations": 2, "min_seconds": 0.05},
        training={"num_epochs": 1},
    ))
    out = run(cfg).output_dir
    record = load_record(out)
    bench = record.benchmark
    assert isinstance(bench, BenchmarkRecord)  # typed after the JSON round trip
    assert list(bench.models) == ["base", "fine-tuned"]
    for entry in bench.models.values():
        assert [b.batch_size for b in entry.batches] == [1, 4]
        assert all(b.latency.count >= 2 and b.cold_s > 0 for b in entry.batches)
        assert entry.num_parameters == record.model.num_parameters
        assert entry.size_on_disk_bytes and entry.size_on_disk_bytes > 0
        assert entry.load_s is not None and entry.load_s > 0
        assert entry.dtype == "float32"
        ev = entry.eval_set
        assert ev is not None and ev.split == "test" and ev.num_examples == 64
        assert 0.5 < ev.padding_efficiency <= 1 and ev.latency.count == 2
    assert bench.models["base"].checkpoint and bench.models["fine-tuned"].checkpoint == ""
    s = bench.settings
    assert (s.device, s.precision, s.timer, s.inputs) == ("cpu", "fp32", "perf_counter", "synthetic")
    assert s.torch_threads >= 1 and s.torch_version and s.transformers_version
    assert bench.seconds is not None and bench.seconds > 0
    text = (out / "README.md").read_text()
    section = text[text.index("## Speed and size"):text.index("<!-- cardgen:end speed -->")]
    assert "| base | " in section and "| fine-tuned | " in section
    for column in ("Parameters", "Size on disk", "Load time", "Mean (ms)", "p50 (ms)", "p90 (ms)", "p99 (ms)",
                   "Samples/s", "Tokens/s", "Peak RSS (MiB)"):
        assert column in section, column
    assert "### Evaluation throughput on real examples" in section
    assert s.device_name in section and "torch threads" in section and "PyTorch " in section
    latency = [line for line in section.splitlines() if line.startswith(("| base | 4 |", "| fine-tuned | 4 |"))]
    assert len(latency) == 2
    # rounded in Python: no long floats leak into the card
    assert not any(len(cell.strip()) > 12 for line in latency for cell in line.split("|"))
    assert render_card(record) == text  # the card re-renders from run.json alone


def test_bench_stage_of_a_run_without_training_measures_one_model(tiny_bert, make_config):
    from cardgen.config import load_config
    from cardgen.pipeline import run

    cfg = load_config(make_config(
        training=None,
        benchmark={"enabled": True, "batch_sizes": [2], "sequence_length": 8, "warmup": 0,
                   "min_iterations": 1, "min_seconds": 0.0},
    ))
    record = run(cfg).record
    assert record.benchmark is not None and list(record.benchmark.models) == ["model"]
    assert record.benchmark.models["model"].load_s is not None


# --------------------------------------------------------------------------------------------------- cardgen bench
def test_cli_bench_json(tiny_bert):
    from click.testing import CliRunner

    from cardgen.cli import cli

    args = ["bench", str(tiny_bert), "--vs", str(tiny_bert), "--batch-sizes", "1,2", "--seq-len", "8",
            "--min-iterations", "2", "--min-seconds", "0", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data["models"]) == ["base", "model"]
    for entry in data["models"].values():
        assert [b["batch_size"] for b in entry["batches"]] == [1, 2]
        assert entry["batches"][0]["latency"]["count"] >= 2
        assert entry["size_on_disk_bytes"] == size_on_disk(tiny_bert)
        assert entry["load_s"] > 0 and entry["checkpoint"] == str(tiny_bert)
    assert data["settings"]["sequence_length"] == 8 and data["settings"]["rounds"] == 3
    table = CliRunner().invoke(cli, args[:-1])
    assert table.exit_code == 0, table.output
    assert "Forward pass" in table.stdout and "load average" in table.stdout, table.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-sizes", "1,x"], "`--batch-sizes` must be"),
        (["--batch-sizes", "0"], "`--batch-sizes` must be"),
        (["--seq-len", "0"], "`--seq-len` must be"),
        (["--precision", "int8"], "`--precision` must be one of"),
        (["--min-seconds", "-1"], "`--min-seconds` must be"),
    ],
)
def test_cli_bench_bad_input_is_one_line_exit_2(tiny_bert, extra, message):
    from click.testing import CliRunner

    from cardgen.cli import cli

    result = CliRunner().invoke(cli, ["bench", str(tiny_bert), *extra])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output


def test_cli_bench_missing_checkpoint(tmp_path):
    from click.testing import CliRunner

    from cardgen.cli import cli

    result = CliRunner().invoke(cli, ["bench", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.output and "hint:" in result.output


def test_bench_checkpoints_times_generation_of_a_causal_lm(tiny_bert, tmp_path):
    from transformers import AutoTokenizer

    from cardgen.bench.checkpoints import bench_checkpoints

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)  # any tokenizer with a small vocabulary will do
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, pad_token_id=0)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    record = bench_checkpoints(str(tmp_path), batch_sizes="1,2", sequence_length=8, warmup=0, min_iterations=2,
                               min_seconds=0.0, rounds=1, new_tokens=4)
    entry = record.models["model"]
    assert [b.batch_size for b in entry.batches] == [1, 2]
    (gen,) = entry.generation
    assert gen.new_tokens == 4 and gen.prompt_length == 8 and gen.time_to_first_token.count >= 2
    assert entry.size_on_disk_bytes == size_on_disk(tmp_path)
