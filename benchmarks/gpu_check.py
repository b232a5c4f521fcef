"""``make gpu-check``: what only a CUDA GPU can show, checked in a few minutes on one GPU.

1. timer: cardgen's CUDA-event timer against wall time with the device synchronised (a large matmul).
2. allocator: MemoryTracker's CUDA peaks (max allocated after reset_peak_memory_stats) for known allocations.
3. autocast bf16 / fp16: the benchmark's autocast runs, and its predictions agree with fp32.
4. eval batch growth: the evaluation engine grows its batch to fit the free GPU memory, same predictions.
5. LoRA + bf16: `cardgen run` trains a LoRA adapter on the sentiment data with bf16 mixed precision.
6. QLoRA: the packaged SmolLM2 (as safetensors) loaded in 4-bit NF4 and trained with LoRA, where bitsandbytes works.
7. fp32 GPU = CPU: the adapter from 5 evaluated in fp32 (TF32 off) on the GPU and on the CPU: same predictions.

It prints a Markdown table to paste into benchmarks/RESULTS.md. Without CUDA it exits with one line (code 2);
``--cpu`` runs every check that can run on a CPU, on the CPU and at tiny sizes (the GPU-only parts are reported as
skipped), so the tests exercise this script on machines without a GPU.

    python benchmarks/gpu_check.py [--cpu] [--model PATH] [--data DIR] [--lm PATH] [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, MINILM, SMOLLM, machine  # noqa: E402

MIB = 2**20


@dataclass
class Check:
    """One line of the table."""

    name: str
    ok: bool | None  # None: skipped (and why in detail)
    value: str
    detail: str
    seconds: float = 0.0


def _run(name: str, fn: Callable[[], tuple[bool | None, str, str]]) -> Check:
    """A check's result, its error as a failed line (the other checks still run)."""
    start = time.perf_counter()
    try:
        ok, value, detail = fn()
    except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
        ok, value, detail = False, "error", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
    return Check(name, ok, value, detail, round(time.perf_counter() - start, 1))


# ---------------------------------------------------------------------------------------------------------------
# 1-4: timing, memory, autocast, batch growth


def check_timer(device: str) -> tuple[bool | None, str, str]:
    import torch

    from cardgen.bench.timing import make_timer, synchronize, time_call

    n = 4096 if device == "cuda" else 512
    a = torch.randn(n, n, device=device)

    def matmul() -> None:
        for _ in range(8):
            a @ a

    matmul()
    event = min(time_call(matmul, device=device) for _ in range(5))
    walls = []
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        matmul()
        synchronize(device)
        walls.append(time.perf_counter() - start)
    wall = min(walls)
    name = make_timer(device).name
    expected = "cuda-events" if device == "cuda" else "perf_counter"
    # On a GPU the events time the kernels alone: close to the synchronised wall time, never above it. On a CPU the
    # timer is perf_counter itself, so only its name and a positive time are checked (load moves both freely).
    ok = name == expected and event > 0 and (device != "cuda" or 0.5 * wall <= event <= wall * 1.05)
    return ok, f"{event * 1e3:.2f} ms", f"{name}; wall with synchronize {wall * 1e3:.2f} ms (8 matmuls {n}x{n})"


def check_allocator(device: str) -> tuple[bool | None, str, str]:
    import torch

    from cardgen.bench.timing import MemoryTracker

    peaks = []
    for mib in (256, 64):  # the second window must not see the first one's peak: reset works
        with MemoryTracker(device) as tracker:
            block = torch.ones(mib * MIB // 4, device=device)
            del block
        memory = tracker.result()
        peaks.append(memory.cuda_max_allocated_bytes if device == "cuda" else memory.rss_delta_bytes)
    if device != "cuda":
        return None, f"{peaks[0] / MIB:.0f} MiB RSS", "skipped on CPU (allocator peaks are CUDA's); RSS delta shown"
    ok = peaks[0] >= 256 * MIB and 64 * MIB <= peaks[1] < 256 * MIB
    return ok, f"{peaks[0] / MIB:.0f} / {peaks[1] / MIB:.0f} MiB", "max allocated for 256 then 64 MiB, reset between"


def _classifier(model: str, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification

    from cardgen.config import ModelConfig
    from cardgen.files import package_path
    from cardgen.models import load_pretrained

    path = package_path(model) if model.startswith("pkg:") else model
    torch.manual_seed(0)
    loaded = load_pretrained(AutoModelForSequenceClassification, ModelConfig(name_or_path=path), num_labels=2)
    return loaded.model.to(device).eval(), loaded.tokenizer


def _texts(data: Path, n: int) -> list[str]:
    lines = (data / "test.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line)["text"] for line in lines]


def check_autocast(device: str, model: str, data: Path) -> tuple[bool | None, str, str]:
    import torch

    from cardgen.bench.inputs import autocast_context, autocast_dtype
    from cardgen.bench.scenarios import benchmark_models
    from cardgen.errors import ConfigError

    clf, tok = _classifier(model, device)
    enc = tok(_texts(data, 64), padding=True, truncation=True, max_length=64, return_tensors="pt").to(device)
    with torch.inference_mode():
        reference = clf(**enc).logits.argmax(-1)
    parts, ok = [], True
    for precision in ("bf16", "fp16"):
        try:
            dtype = autocast_dtype(precision, device)
        except ConfigError as exc:
            parts.append(f"{precision}: refused ({exc.message[:60]})")
            ok = ok and device != "cuda"  # a GPU must run both (bf16 on Ampere and later)
            continue
        with torch.inference_mode(), autocast_context(device, dtype):
            agree = float((clf(**enc).logits.argmax(-1) == reference).float().mean())
        bench = benchmark_models({"model": (clf, tok)}, batch_sizes=[8], sequence_length=64, warmup=1,
                                 min_iterations=3, min_seconds=0.1, precision=precision, rounds=1)  # type: ignore[arg-type]
        mean = bench.models["model"].batches[0].latency.mean_s
        parts.append(f"{precision}: {mean * 1e3:.2f} ms/batch 8, agreement {agree:.3f}")
        ok = ok and agree >= 0.95 and bench.settings.autocast_dtype == str(dtype).removeprefix("torch.")
    return ok, "; ".join(p.split(":")[0] + (" ok" if "refused" not in p else " refused") for p in parts), \
        "; ".join(parts)


def check_growth(device: str, model: str, data: Path) -> tuple[bool | None, str, str]:
    from cardgen.engine import run_engine

    clf, tok = _classifier(model, device)
    enc = tok(_texts(data, 2000 if device == "cuda" else 64), truncation=True, max_length=64)
    features = [{k: enc[k][i] for k in ("input_ids", "attention_mask")} for i in range(len(enc["input_ids"]))]

    def step(m: Any, batch: dict[str, Any]) -> dict[str, Any]:
        return {"prediction": m(**batch).logits.argmax(-1)}

    fixed = run_engine(clf, features, step, batch_size=8, auto_batch=False)
    grown = run_engine(clf, features, step, batch_size=8)
    same = (fixed.outputs["prediction"] == grown.outputs["prediction"]).all()
    detail = (f"largest batch {grown.max_batch_size} (packed, no growth: {fixed.max_batch_size}); "
              f"{grown.num_batches} vs {fixed.num_batches} batches; {len(features)} texts; same predictions: {same}")
    if device != "cuda":
        return None, f"{grown.max_batch_size} rows", "skipped on CPU (growth is CUDA-only by design); " + detail
    return bool(same) and grown.max_batch_size > fixed.max_batch_size, f"{grown.max_batch_size} rows", detail


# ---------------------------------------------------------------------------------------------------------------
# 5-7: LoRA with bf16, QLoRA, fp32 on GPU = CPU


def _sentiment_config(model: str, data: Path, out: Path, device: str, **sections: Any) -> Any:
    from cardgen.config import load_config
    from cardgen.environment import cpu_has_native_bf16

    bf16 = device == "cuda" or cpu_has_native_bf16()
    raw: dict[str, Any] = {
        "model": {"name_or_path": model}, "task": "text-classification",
        "data": {"train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl"),
                 "test": str(data / "test.jsonl"), "label_names": ["negative", "positive"], "max_length": 64,
                 "max_train_samples": 2000 if device == "cuda" else 160,
                 "max_eval_samples": 2000 if device == "cuda" else 64},
        "peft": {"r": 16, "alpha": 32, "dropout": 0.1},
        "training": {"learning_rate": 1e-3, "num_epochs": 1, "train_batch_size": 32, "eval_batch_size": 64,
                     "seed": 42, "mixed_precision": "bf16" if bf16 else "no"},
        "compare": {"enabled": False}, "benchmark": {"enabled": False},
        "card": {"model_name": "gpu-check", "base_model": "sentence-transformers/all-MiniLM-L6-v2"},
        "output": {"dir": str(out), "overwrite": True},
    }
    raw.update(sections)
    return load_config(data=raw)


def check_lora_bf16(device: str, model: str, data: Path, out: Path) -> tuple[bool | None, str, str]:
    from cardgen.pipeline import run

    cfg = _sentiment_config(model, data, out, device)
    start = time.perf_counter()
    rec = run(cfg).record
    seconds = time.perf_counter() - start
    accuracy = rec.evaluation.metrics["accuracy"]
    bf16 = bool(rec.training.arguments.get("bf16"))
    ok = rec.adapter is not None and bf16 == (cfg.training.mixed_precision == "bf16") and (
        accuracy > 0.7 if device == "cuda" else True)
    return ok, f"accuracy {accuracy:.4f}", (
        f"{rec.data.splits['train'].num_examples} train examples, 1 epoch, bf16 {bf16}, train "
        f"{rec.training.train_runtime_s:.1f} s, run {seconds:.1f} s, adapter {rec.adapter.trainable_parameters:,} of "
        f"{rec.adapter.total_parameters:,} parameters")


def check_qlora(device: str, lm: str, data: Path, work: Path) -> tuple[bool | None, str, str]:
    import importlib.util

    from cardgen.adapters import check_options
    from cardgen.config import load_config
    from cardgen.errors import ConfigError

    if device != "cuda":
        cfg = load_config(data={"model": {"name_or_path": "x", "quantization": "4bit"}, "peft": {},
                                "data": {"train": "x"}})
        try:
            check_options(cfg)
        except ConfigError as exc:
            return None, "refused", f"skipped on CPU; refused in one line as it should: {exc.one_line()[:200]}"
        return False, "not refused", "4-bit weights were accepted without CUDA"
    if importlib.util.find_spec("bitsandbytes") is None:
        return None, "no bitsandbytes", "skipped: pip install 'cardgen[qlora]'"
    from transformers import AutoModelForCausalLM

    from cardgen.config import ModelConfig
    from cardgen.files import package_path
    from cardgen.models import load_pretrained
    from cardgen.pipeline import run

    source = package_path(lm) if lm.startswith("pkg:") else lm
    base = work / "smollm2-safetensors"  # bitsandbytes quantizes safetensors weights, not a GGUF file
    if source.endswith(".gguf"):
        loaded = load_pretrained(AutoModelForCausalLM, ModelConfig(name_or_path=source))
        loaded.model.save_pretrained(base, safe_serialization=True)
        loaded.tokenizer.save_pretrained(base)
        source = str(base)
    cfg = load_config(data={
        "model": {"name_or_path": source, "quantization": "4bit"}, "task": "causal-lm",
        "data": {"train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl"),
                 "test": str(data / "test.jsonl"), "max_train_samples": 96, "max_eval_samples": 32},
        "lm": {"block_size": 64, "stride": 32}, "peft": {"r": 16, "alpha": 32},
        "training": {"learning_rate": 1e-3, "num_epochs": 1, "train_batch_size": 8, "eval_batch_size": 8},
        "benchmark": {"enabled": False},
        "card": {"model_name": "gpu-check-qlora", "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        "output": {"dir": str(work / "qlora"), "overwrite": True}})
    rec = run(cfg).record
    base_ppl, ppl = rec.base_evaluation.metrics["perplexity"], rec.evaluation.metrics["perplexity"]
    ok = bool(rec.adapter and rec.adapter.quantization and rec.adapter.quantization.startswith("4-bit")) and ppl < 1e4
    return ok, f"perplexity {base_ppl:.1f} -> {ppl:.1f}", f"{rec.adapter.quantization}; base with the adapter disabled"


def check_fp32_equal(device: str, adapter: Path, data: Path) -> tuple[bool | None, str, str]:
    import torch
    from transformers import AutoModelForSequenceClassification

    from cardgen.config import ModelConfig, load_config
    from cardgen.models import load_pretrained
    from cardgen.tasks import classification

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg = load_config(adapter / "config.yaml")
    results = {}
    for where in ("cpu", device):
        loaded = load_pretrained(AutoModelForSequenceClassification, ModelConfig(name_or_path=str(adapter)),
                                 num_labels=2)
        loaded.model.to(where).float().eval()
        frame = classification.prepare_data(cfg, loaded.tokenizer, False).frames["test"]
        results[where] = classification.evaluate(loaded, frame, cfg, ["negative", "positive"], where, "test")
    cpu, other = results["cpu"], results[device]
    differ = sum(a != b for a, b in zip(cpu.predictions, other.predictions, strict=True))
    loss = max(abs(a - b) for a, b in zip(cpu.losses, other.losses, strict=True))
    what = f"{device} vs cpu" + (" (dry run: the CPU twice)" if device == "cpu" else "")
    return differ == 0, f"{differ} of {len(cpu.predictions)} differ", f"{what}; max loss difference {loss:.2e}"


# ---------------------------------------------------------------------------------------------------------------


def print_table(checks: list[Check], file: Any = None) -> None:
    file = file or sys.stdout
    print("| Check | OK | Result | Seconds | Details |", file=file)
    print("|---|---|---|---|---|", file=file)
    for c in checks:
        ok = {True: "yes", False: "**NO**", None: "skipped"}[c.ok]
        print(f"| {c.name} | {ok} | {c.value} | {c.seconds:g} | {c.detail} |", file=file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="dry run on the CPU: the checks a CPU can run")
    parser.add_argument("--model", default=MINILM, help="encoder for the sentiment checks (default: packaged MiniLM)")
    parser.add_argument("--data", type=Path, default=DATA, help="sentiment data (train/validation/test.jsonl)")
    parser.add_argument("--lm", default=SMOLLM, help="causal LM for QLoRA (default: packaged SmolLM2)")
    parser.add_argument("--out", type=Path, help="working directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the checks and the machine as JSON")
    args = parser.parse_args(argv)
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU on this machine (torch.cuda.is_available() is False); run it where there is "
              "one, or pass --cpu for the dry run", file=sys.stderr)
        return 2
    device = "cpu" if args.cpu else "cuda"
    if not (args.data / "test.jsonl").is_file():
        print(f"gpu-check: no sentiment data in {args.data}; run `make data` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = args.out or Path(tmp)
        adapter = work / "lora-bf16"
        checks = [
            _run("timer", lambda: check_timer(device)),
            _run("allocator peaks", lambda: check_allocator(device)),
            _run("autocast bf16 / fp16", lambda: check_autocast(device, args.model, args.data)),
            _run("eval batch growth", lambda: check_growth(device, args.model, args.data)),
            _run("LoRA + bf16 training", lambda: check_lora_bf16(device, args.model, args.data, adapter)),
            _run("QLoRA (4-bit NF4)", lambda: check_qlora(device, args.lm, args.data, work)),
            _run("fp32 predictions = CPU", lambda: check_fp32_equal(device, adapter, args.data)),
        ]
    facts = machine()
    print(f"gpu-check on {facts.get('cuda') or 'CPU (dry run)'}; torch {facts['torch']}, transformers "
          f"{facts['transformers']}, cardgen {facts['cardgen']}; load average {facts['load_average']}")
    print_table(checks)
    if args.json:
        args.json.write_text(json.dumps({"machine": facts, "checks": [asdict(c) for c in checks]}, indent=2))
    return 0 if all(c.ok is not False for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
