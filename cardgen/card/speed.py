"""Benchmark records as rows: the card's "Speed and size" context and ``cardgen bench``'s tables.

Numbers are rounded here, in Python; the template only prints. No torch import: the card re-renders from run.json.
"""

from __future__ import annotations

from typing import Any

from cardgen.record import BatchResult, BenchmarkRecord, LatencyStats, MemoryStats, ModelBenchmark

MIB = 2**20


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds with 3 significant digits or more (``12.3``, ``0.456``, ``1234``)."""
    if seconds is None:
        return "—"
    value = seconds * 1000
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def rate(value: float | None) -> str:
    """A throughput: thousands separated above 100, one decimal below."""
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def mib(value: int | None) -> str:
    """Bytes as MiB."""
    return "—" if value is None else f"{value / MIB:,.0f}"


def size(value: int | None) -> str:
    """Bytes as MB (10^6), one decimal."""
    return "—" if value is None else f"{value / 1e6:,.1f} MB"


def params(value: int) -> str:
    """A parameter count: billions (``1.24B``), millions (``22.7M``), or the count itself below a million."""
    if value >= 1e9:
        return f"{value / 1e9:.2f}B"
    return f"{value / 1e6:.1f}M" if value >= 1e6 else f"{value:,}"


def seconds(value: float | None) -> str:
    """Seconds with two decimals (``1.23 s``)."""
    return "—" if value is None else f"{value:.2f} s"


def _memory_cells(memory: MemoryStats, cuda: bool) -> list[str]:
    if cuda:
        return [mib(memory.cuda_max_allocated_bytes), mib(memory.cuda_max_reserved_bytes)]
    return [mib(memory.rss_peak_bytes), mib(memory.rss_delta_bytes)]


def memory_header(cuda: bool) -> list[str]:
    """The memory columns: allocator peaks on CUDA, process RSS on CPU."""
    if cuda:
        return ["CUDA max allocated (MiB)", "CUDA max reserved (MiB)"]
    return ["Peak RSS (MiB)", "RSS added by the calls (MiB)"]


def _latency_cells(lat: LatencyStats) -> list[str]:
    return [ms(lat.mean_s), ms(lat.p50_s), ms(lat.p90_s), ms(lat.p99_s), ms(lat.std_s)]


def latency_rows(bench: BenchmarkRecord, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the forward-pass table: one row per batch size and model, models interleaved.

    ``compact`` (for a terminal) leaves out the standard deviation, the RSS added and the number of calls.
    """
    cuda = bench.settings.device.startswith("cuda")
    memory = memory_header(cuda)
    if compact:
        header = ["Model", "Batch", "Tokens", "Mean ms", "p50 ms", "p90 ms", "p99 ms", "Samples/s", "Tokens/s",
                  "Cold ms", "Peak MiB"]
    else:
        header = ["Model", "Batch", "Tokens/row", "Mean (ms)", "p50 (ms)", "p90 (ms)", "p99 (ms)", "Std (ms)",
                  "Samples/s", "Tokens/s", "Cold call (ms)", *memory, "Timed calls"]
    rows = []
    sizes = sorted({b.batch_size for m in bench.models.values() for b in m.batches})
    for batch_size in sizes:
        for model in bench.models.values():
            for b in model.batches:
                if b.batch_size == batch_size:
                    row = _batch_row(model.name, b, cuda)
                    rows.append([*row[:7], *row[8:12]] if compact else row)
    return header, rows


def _batch_row(name: str, b: BatchResult, cuda: bool) -> list[str]:
    lat = b.latency
    return [name, str(b.batch_size), str(b.sequence_length), *_latency_cells(lat), rate(lat.samples_per_s),
            rate(lat.tokens_per_s), ms(b.cold_s), *_memory_cells(b.memory, cuda), str(lat.count)]


def model_rows(bench: BenchmarkRecord) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the model facts: parameters, size on disk, load time, weight dtype."""
    header = ["Model", "Parameters", "Size on disk", "Load time", "Weights"]
    rows = [[m.name, params(m.num_parameters), size(m.size_on_disk_bytes), seconds(m.load_s), m.dtype or "—"]
            for m in bench.models.values()]
    return header, rows


def eval_set_rows(bench: BenchmarkRecord) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the evaluation engine on real examples (empty rows when not measured)."""
    cuda = bench.settings.device.startswith("cuda")
    header = ["Model", "Examples", "Batch", "Pass mean (s)", "Pass p50 (s)", "Samples/s", "Tokens/s",
              "Padding efficiency", "Cold pass (s)", *memory_header(cuda)]
    rows = []
    for m in bench.models.values():
        e = m.eval_set
        if e is None:
            continue
        lat = e.latency
        rows.append([m.name, str(e.num_examples), str(e.batch_size), f"{lat.mean_s:.3f}", f"{lat.p50_s:.3f}",
                     rate(lat.samples_per_s), rate(lat.tokens_per_s), f"{e.padding_efficiency:.3f}",
                     f"{e.cold_s:.3f}", *_memory_cells(e.memory, cuda)])
    return header, rows


def generation_rows(bench: BenchmarkRecord) -> tuple[list[str], list[list[str]]]:
    """Header and rows of causal-LM generation: time to first token and decode speed."""
    header = ["Model", "Batch", "Prompt tokens", "New tokens", "First token mean (ms)", "First token p50 (ms)",
              "First token p90 (ms)", "Generate mean (ms)", "Decode tokens/s", "Cold generate (ms)"]
    rows = []
    for m in bench.models.values():
        for g in m.generation:
            rows.append([m.name, str(g.batch_size), str(g.prompt_length), str(g.new_tokens),
                         ms(g.time_to_first_token.mean_s), ms(g.time_to_first_token.p50_s),
                         ms(g.time_to_first_token.p90_s), ms(g.generate.mean_s), rate(g.decode_tokens_per_s),
                         ms(g.cold_s)])
    return header, rows


def _ratios(numerator: ModelBenchmark, denominator: ModelBenchmark) -> list[str]:
    """Mean latency of one model over another's, per batch size both measured."""
    other = {b.batch_size: b.latency.mean_s for b in denominator.batches}
    return [f"{b.latency.mean_s / other[b.batch_size]:.2f}x at batch {b.batch_size}"
            for b in numerator.batches if other.get(b.batch_size)]


def _ratio_note(bench: BenchmarkRecord) -> str | None:
    """How the fine-tuned model's mean latency compares with the base's at each batch size, and an adapter's
    unmerged with its merged weights'."""
    models = bench.models
    notes = []
    if "base" in models and "fine-tuned" in models and (parts := _ratios(models["fine-tuned"], models["base"])):
        notes.append("Fine-tuned / base mean latency: " + ", ".join(parts) + ".")
    for name, model in models.items():
        merged = models.get(f"{name} (merged)")
        if merged is not None and (parts := _ratios(model, merged)):
            notes.append(f"Unmerged adapter / merged weights mean latency: {', '.join(parts)} (`{name}` runs the "
                         "LoRA layers beside the frozen weights, as peft loads an adapter; "
                         f"`{name} (merged)` has them folded into the weights by merge_and_unload).")
    return " ".join(notes) or None


def describe(bench: BenchmarkRecord) -> dict[str, str]:
    """How and where the numbers were made, in words."""
    s = bench.settings
    precision = s.precision + (f" (autocast to {s.autocast_dtype})" if s.autocast_dtype else "")
    cores = f", {s.cpu_count} CPU cores" if s.cpu_count else ""
    inputs = (f"seeded random token ids, {s.sequence_length} per row, full attention mask, the same ids for every "
              "model" if s.inputs == "synthetic" else f"real texts truncated to {s.sequence_length} tokens")
    return {
        "hardware": f"{s.device_name} (`{s.device}`){cores}, {s.torch_threads} torch threads",
        "precision": precision + (", torch.compile" if s.compile else ""),
        "versions": f"PyTorch {s.torch_version}, Transformers {s.transformers_version}"
                    + (f", cardgen {s.cardgen_version}" if s.cardgen_version else ""),
        "inputs": inputs,
        "budget": (f"a cold call, {s.warmup} warm-up calls, then at least {s.min_iterations} timed calls and "
                   f"{s.min_seconds:g} s of timed calls per model and batch size, spread over {s.rounds} rounds "
                   "that alternate the models"),
        "timer": "CUDA events, device synchronised before reading" if s.timer == "cuda-events"
                 else "time.perf_counter around each call",
        "memory": s.memory_method,
        "load_average": ", ".join(f"{x:g}" for x in bench.load_average) if bench.load_average else "",
        "seconds": f"{bench.seconds:.1f}" if bench.seconds is not None else "",
    }


def speed_context(bench: BenchmarkRecord) -> dict[str, Any]:
    """Everything ``partials/speed.md.j2`` prints, rounded."""
    latency_header, latency = latency_rows(bench)
    models_header, models = model_rows(bench)
    eval_header, eval_rows = eval_set_rows(bench)
    gen_header, gen_rows = generation_rows(bench)
    first_eval = next((m.eval_set for m in bench.models.values() if m.eval_set is not None), None)
    return {
        **describe(bench),
        "models_header": models_header, "models": models,
        "latency_header": latency_header, "latency": latency,
        "eval_header": eval_header, "eval_set": eval_rows,
        "eval_split": first_eval.split if first_eval else "",
        "eval_max_length": first_eval.max_length if first_eval else 0,
        "generation_header": gen_header, "generation": gen_rows,
        "ratio_note": _ratio_note(bench),
        "notes": [n[:1].upper() + n[1:] for n in bench.settings.notes],
        "interleaved": _interleaved_sentence(list(bench.models)),
    }


def _interleaved_sentence(names: list[str]) -> str | None:
    if len(names) < 2:
        return None
    listed = ", ".join(f"the {n}" for n in names[:-1]) + f" and the {names[-1]}"
    what = "model" if len(names) == 2 else "models"
    return (f"{listed[0].upper()}{listed[1:]} {what} were measured in the same process in interleaved rounds, so "
            "drift of the machine hits both alike.")


def cli_tables(bench: BenchmarkRecord) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each table ``cardgen bench`` prints."""
    tables = [("Models", *model_rows(bench)), ("Forward pass", *latency_rows(bench, compact=True))]
    eval_header, eval_rows = eval_set_rows(bench)
    if eval_rows:
        tables.append(("Evaluation engine on real examples", eval_header, eval_rows))
    gen_header, gen_rows = generation_rows(bench)
    if gen_rows:
        tables.append(("Generation", gen_header, gen_rows))
    return tables


def model_summary(model: ModelBenchmark) -> str:
    """One line: where a model came from."""
    return f"{model.name}: {model.checkpoint or '(not saved yet)'}"
