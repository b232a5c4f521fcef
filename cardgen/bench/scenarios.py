"""Latency, throughput and memory of models (base and fine-tuned) measured in the same process.

:func:`benchmark_models` times forward passes on fixed synthetic shapes or real texts; :func:`benchmark_generation`
times a causal LM's first token and decoding. Both interleave the models round by round (see :mod:`cardgen.timing`
for how each number is made: timers, CUDA events, percentiles, memory). :func:`benchmark_stage` is the run's stage
and :func:`bench_checkpoints` is ``cardgen bench`` (both in :mod:`cardgen.bench_stage`).

The module imports neither torch nor transformers at import time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cardgen.bench.inputs import (
    autocast_context,
    autocast_dtype,
    input_names,
    pad_id_of,
    shared_vocab_size,
    synthetic_batch,
    synthetic_ids,
    text_batch,
    to_device,
)
from cardgen.bench.timing import (
    Slot,
    check_budget,
    is_cuda,
    latency_stats,
    make_timer,
    memory_method,
    run_interleaved,
)
from cardgen.errors import ConfigError, ModelError
from cardgen.models import num_parameters, size_on_disk
from cardgen.record import BatchResult, BenchmarkRecord, BenchmarkSettings, GenerationResult, ModelBenchmark

Precision = Literal["fp32", "bf16", "fp16"]



# --------------------------------------------------------------------------------------------------- model facts




def _checkpoint_dir(model: Any) -> Path | None:
    name = getattr(model, "name_or_path", None) or getattr(
        getattr(model, "config", None), "_name_or_path", None
    )
    if name and Path(name).exists():
        return Path(name)
    return None


def _model_device(name: str, model: Any) -> Any:
    try:
        return next(model.parameters()).device
    except StopIteration:
        raise ModelError(
            f"model `{name}` has no parameters", hint="pass a loaded transformers model"
        ) from None



@contextmanager
def _eval_mode(models: Sequence[Any]) -> Iterator[None]:
    was_training = [bool(getattr(m, "training", False)) for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(models, was_training, strict=True):
            m.train(mode)


def _check_common(
    models: Mapping[str, tuple[Any, Any]],
    batch_sizes: Sequence[int],
    length: int,
    rounds: int,
    inputs: Any,
    length_name: str,
) -> Any:
    """Validate the arguments shared by both benchmarks; return the one device all models are on."""
    if not models:
        raise ConfigError("nothing to benchmark: no models given")
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ConfigError(f"`benchmark.batch_sizes` must be integers >= 1 (got {list(batch_sizes)})")
    if length < 1:
        raise ConfigError(f"`benchmark.{length_name}` must be >= 1 (got {length})")
    if rounds < 1:
        raise ConfigError(f"`benchmark.rounds` must be >= 1 (got {rounds})")
    if not (
        inputs == "synthetic"
        or (isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs))
    ):
        raise ConfigError("`benchmark.inputs` must be 'synthetic' or a non-empty list of texts")
    devices = {name: _model_device(name, model) for name, (model, _) in models.items()}
    if len({str(d) for d in devices.values()}) > 1:
        raise ModelError(
            f"the models are on different devices ({', '.join(f'{n}: {d}' for n, d in devices.items())})",
            hint="put them on the same device so their numbers compare",
        )
    return next(iter(devices.values()))


def _settings(
    *,
    device: Any,
    precision: str,
    dtype: Any,
    compile: bool,
    batch_sizes: Sequence[int],
    length: int,
    inputs: Any,
    warmup: int,
    min_iterations: int,
    min_seconds: float,
    rounds: int,
    seed: int,
) -> BenchmarkSettings:
    import torch

    if is_cuda(device):
        device_name = torch.cuda.get_device_name(device)
    else:
        from cardgen.environment import cpu_name

        device_name = cpu_name()
    try:
        transformers_version = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        transformers_version = ""
    return BenchmarkSettings(
        device=str(device),
        device_name=device_name,
        precision=precision,
        autocast_dtype=str(dtype).removeprefix("torch.") if dtype is not None else None,
        compile=compile,
        torch_threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        transformers_version=transformers_version,
        batch_sizes=[int(b) for b in batch_sizes],
        sequence_length=int(length),
        inputs="synthetic" if inputs == "synthetic" else "texts",
        warmup=warmup,
        min_iterations=min_iterations,
        min_seconds=float(min_seconds),
        rounds=rounds,
        seed=seed,
        timer=make_timer(device).name,
        memory_method=memory_method(device),
        notes=[
            "inputs are on the device before timing: host-to-device copies are not timed",
            "the first model's cold call also pays one-off costs of the process (lazy imports, thread pools)",
            "memory peaks are process-wide: they include every model loaded in the process",
        ],
        cpu_count=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        cardgen_version=_cardgen_version(),
    )


def _cardgen_version() -> str:
    from cardgen.version import __version__

    return __version__


def _model_entry(
    name: str,
    model: Any,
    device: Any,
    load_s: Mapping[str, float] | None,
    checkpoints: Mapping[str, str | os.PathLike[str]] | None,
) -> ModelBenchmark:
    path = (checkpoints or {}).get(name) or _checkpoint_dir(model)
    return ModelBenchmark(
        name=name,
        device=str(device),
        num_parameters=num_parameters(model),
        size_on_disk_bytes=size_on_disk(path) if path is not None else None,
        load_s=float(load_s[name]) if load_s and name in load_s else None,
        dtype=_weights_dtype(model),
        checkpoint=str(path) if path is not None else None,
    )


def _weights_dtype(model: Any) -> str:
    try:
        return str(next(model.parameters()).dtype).removeprefix("torch.")
    except StopIteration:
        return ""


# --------------------------------------------------------------------------------------------------- benchmarks
def benchmark_models(
    models: Mapping[str, tuple[Any, Any]],
    *,
    batch_sizes: Sequence[int] = (1, 32),
    sequence_length: int = 128,
    warmup: int = 2,
    min_iterations: int = 10,
    min_seconds: float = 1.0,
    precision: Precision = "fp32",
    compile: bool = False,
    inputs: Literal["synthetic"] | Sequence[str] = "synthetic",
    rounds: int = 3,
    seed: int = 0,
    load_s: Mapping[str, float] | None = None,
    checkpoints: Mapping[str, str | os.PathLike[str]] | None = None,
) -> BenchmarkRecord:
    """Forward-pass latency, throughput and memory of several models (base and fine-tuned) on the same inputs.

    All models are measured in this process, in interleaved rounds per batch size. Inputs are moved to the device
    before timing (host-to-device copies are not timed). Calls run under ``torch.inference_mode`` and, for bf16/fp16,
    ``torch.autocast``.

    Args:
        models: Name -> (model, tokenizer), every model already on the same device. The tokenizer may be None for
            synthetic inputs.
        batch_sizes: Batch sizes to measure.
        sequence_length: Tokens per row for synthetic inputs; the truncation length for texts.
        warmup: Un-timed calls after the cold call.
        min_iterations: Fewest timed calls per model and batch size (over all rounds).
        min_seconds: Fewest timed seconds per model and batch size (over all rounds).
        precision: "fp32", "bf16" (CUDA, or a CPU with native bf16) or "fp16" (CUDA): autocast dtype.
        compile: Wrap each model in ``torch.compile`` (the cold call then includes compilation).
        inputs: "synthetic" (seeded random ids in the smallest vocabulary of the models, full attention mask,
            identical for every model) or real texts (the first ``batch_size`` texts, cycled, each model's own
            tokenizer, padded to the batch's longest).
        rounds: Interleaved rounds.
        seed: Seed of the synthetic ids.
        load_s: Name -> seconds the model took to load (see :func:`timed`), recorded as given.
        checkpoints: Name -> checkpoint path for the size on disk; defaults to the directory the model was loaded
            from, when it exists locally.

    Returns:
        The settings and, per model, per batch size: latency statistics, cold call, memory; parameters and size.

    Raises:
        ConfigError: A bad budget, batch size, precision or inputs.
        ModelError: Models on different devices, or a model without parameters.
    """
    import torch

    check_budget(warmup, min_iterations, min_seconds)
    device = _check_common(models, batch_sizes, sequence_length, rounds, inputs, "sequence_length")
    dtype = autocast_dtype(precision, device)
    settings = _settings(device=device, precision=precision, dtype=dtype, compile=compile, batch_sizes=batch_sizes,
                         length=sequence_length, inputs=inputs, warmup=warmup, min_iterations=min_iterations,
                         min_seconds=min_seconds, rounds=rounds, seed=seed)
    record = BenchmarkRecord(
        settings=settings,
        models={name: _model_entry(name, m, device, load_s, checkpoints) for name, (m, _) in models.items()},
    )
    runners = {name: (torch.compile(m) if compile else m) for name, (m, _) in models.items()}
    ids = synthetic_ids(max(batch_sizes), sequence_length, shared_vocab_size(models), seed=seed) \
        if inputs == "synthetic" else None
    with _eval_mode([m for m, _ in models.values()]), torch.inference_mode(), autocast_context(device, dtype):
        for batch_size in batch_sizes:
            slots, shapes = _forward_slots(models, runners, batch_size, ids, inputs, sequence_length, device)
            run_interleaved(slots, warmup=warmup, min_iterations=min_iterations, min_seconds=min_seconds,
                            rounds=rounds)
            for name in models:
                slot, (width, tokens) = slots[name], shapes[name]
                assert slot.memory is not None
                record.models[name].batches.append(BatchResult(
                    batch_size=batch_size, sequence_length=width, tokens_per_batch=tokens, cold_s=slot.cold_s,
                    latency=latency_stats(slot.seconds, batch_size, tokens_per_batch=tokens), memory=slot.memory))
    return record


def _forward_slots(models: Mapping[str, tuple[Any, Any]], runners: Mapping[str, Any], batch_size: int,
                   ids: np.ndarray | None, inputs: Any, sequence_length: int, device: Any,
                   ) -> tuple[dict[Hashable, Slot], dict[str, tuple[int, int]]]:
    """One timed forward call per model at ``batch_size``, its inputs already on the device; and each batch's
    (padded width, real tokens)."""
    slots: dict[Hashable, Slot] = {}
    shapes: dict[str, tuple[int, int]] = {}
    for name, (model, tokenizer) in models.items():
        if ids is not None:
            arrays = synthetic_batch(ids[:batch_size], input_names(tokenizer))
        else:
            arrays = text_batch(inputs, batch_size, sequence_length, tokenizer, pad_id_of(tokenizer, model))
        if getattr(model.config, "is_encoder_decoder", False):  # seq2seq: the decoder reads a sequence as long
            arrays["decoder_input_ids"] = arrays["input_ids"].copy()  # as the source (teacher-forced forward)
        batch = to_device(arrays, device)
        shapes[name] = (arrays["input_ids"].shape[1], int(arrays["attention_mask"].sum()))
        slots[name] = Slot(call=partial(runners[name], **batch), device=device)
    return slots, shapes


def benchmark_generation(
    models: Mapping[str, tuple[Any, Any]],
    *,
    batch_size: int = 1,
    prompt_length: int = 32,
    new_tokens: int = 32,
    warmup: int = 1,
    min_iterations: int = 5,
    min_seconds: float = 1.0,
    precision: Precision = "fp32",
    inputs: Literal["synthetic"] | Sequence[str] = "synthetic",
    rounds: int = 3,
    seed: int = 0,
    record: BenchmarkRecord | None = None,
    load_s: Mapping[str, float] | None = None,
    checkpoints: Mapping[str, str | os.PathLike[str]] | None = None,
) -> BenchmarkRecord:
    """Time to first token and decode speed of causal LMs, greedy, with a fixed number of new tokens.

    Two calls are timed per model, interleaved like :func:`benchmark_models`: ``generate`` with
    ``max_new_tokens = min_new_tokens = 1`` (time to first token: prefill and one token) and with
    ``max_new_tokens = min_new_tokens = new_tokens``. Decode tokens/s is
    ``batch_size * (new_tokens - 1) / (mean full - mean first-token)``. Prompts are left-padded.

    Args:
        models: Name -> (model, tokenizer) of causal LMs on the same device.
        batch_size: Prompts per call.
        prompt_length: Tokens per synthetic prompt; truncation length for texts.
        new_tokens: Tokens generated per prompt (>= 2), always exactly this many.
        warmup: Un-timed calls after the cold call.
        min_iterations: Fewest timed calls per model and kind.
        min_seconds: Fewest timed seconds per model and kind.
        precision: As in :func:`benchmark_models`.
        inputs: "synthetic" or real texts, as in :func:`benchmark_models`.
        rounds: Interleaved rounds.
        seed: Seed of the synthetic prompts.
        record: Add the results to this record (from :func:`benchmark_models`) instead of a new one.
        load_s: As in :func:`benchmark_models` (for a new record).
        checkpoints: As in :func:`benchmark_models` (for a new record).

    Returns:
        The record, with a :class:`GenerationResult` per model.

    Raises:
        ConfigError: Fewer than 2 new tokens, or a bad budget, precision or inputs.
        ModelError: A model that does not generate exactly ``new_tokens`` tokens, or models on different devices.
    """
    import torch

    if new_tokens < 2:
        raise ConfigError(f"`benchmark.new_tokens` must be >= 2 to separate decoding from the first token "
                          f"(got {new_tokens})")
    check_budget(warmup, min_iterations, min_seconds)
    device = _check_common(models, [batch_size], prompt_length, rounds, inputs, "prompt_length")
    dtype = autocast_dtype(precision, device)
    if record is None:
        settings = _settings(device=device, precision=precision, dtype=dtype, compile=False, batch_sizes=[batch_size],
                             length=prompt_length, inputs=inputs, warmup=warmup, min_iterations=min_iterations,
                             min_seconds=min_seconds, rounds=rounds, seed=seed)
        record = BenchmarkRecord(settings=settings, models={})
    for name, (model, _) in models.items():
        if name not in record.models:
            record.models[name] = _model_entry(name, model, device, load_s, checkpoints)
    ids = synthetic_ids(batch_size, prompt_length, shared_vocab_size(models), seed=seed) if inputs == "synthetic" \
        else None

    with _eval_mode([m for m, _ in models.values()]), torch.inference_mode(), autocast_context(device, dtype):
        slots, prompt_widths = _generation_slots(models, ids, inputs, batch_size, prompt_length, new_tokens, device)

        def check(key: Hashable, output: Any) -> None:
            model_name, kind = str(key[0]), str(key[1])  # type: ignore[index]
            expected = 1 if kind == "ttft" else new_tokens
            produced = output.shape[-1] - _output_offset(models[model_name][0], prompt_widths[model_name])
            if produced != expected:
                raise ModelError(f"model `{model_name}` generated {produced} new tokens instead of {expected}",
                                 hint="check its generation config (stop strings, max_length)")

        run_interleaved(slots, warmup=warmup, min_iterations=min_iterations, min_seconds=min_seconds, rounds=rounds,
                        check=check)
    for name in models:
        record.models[name].generation.append(
            _generation_result(slots[(name, "ttft")], slots[(name, "full")], batch_size, prompt_widths[name],
                               new_tokens))
    return record


# --------------------------------------------------------------------------------------------------- entry points


def finish_record(bench: BenchmarkRecord, start: float) -> None:
    """Stamp the record with its wall time and the machine's load average."""
    bench.seconds = round(time.perf_counter() - start, 3)
    if hasattr(os, "getloadavg"):
        bench.load_average = [round(x, 2) for x in os.getloadavg()]


def _output_offset(model: Any, prompt_width: int) -> int:
    """Where the new tokens start in generate()'s output: after the prompt for a decoder-only model, after the
    decoder's start token for an encoder-decoder."""
    return 1 if getattr(model.config, "is_encoder_decoder", False) else prompt_width


def _generation_slots(models: Mapping[str, tuple[Any, Any]], ids: np.ndarray | None, inputs: Any, batch_size: int,
                      prompt_length: int, new_tokens: int, device: Any,
                      ) -> tuple[dict[Hashable, Slot], dict[str, int]]:
    """Two timed ``generate`` calls per model (first token only, and ``new_tokens``), left-padded prompts on the
    device; and each model's prompt width."""
    slots: dict[Hashable, Slot] = {}
    prompt_widths: dict[str, int] = {}
    for name, (model, tokenizer) in models.items():
        pad_id = pad_id_of(tokenizer, model)
        if ids is not None:
            arrays = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        else:
            arrays = text_batch(inputs, batch_size, prompt_length, tokenizer, pad_id, left=True)
            arrays.pop("token_type_ids", None)
        batch = to_device(arrays, device)
        prompt_widths[name] = arrays["input_ids"].shape[1]
        common = {"do_sample": False, "num_beams": 1, "use_cache": True, "pad_token_id": pad_id}
        for kind, count in (("ttft", 1), ("full", new_tokens)):
            kwargs = {**common, "max_new_tokens": count, "min_new_tokens": count}
            slots[(name, kind)] = Slot(call=partial(model.generate, **batch, **kwargs), device=device)
    return slots, prompt_widths


def _generation_result(ttft: Slot, full: Slot, batch_size: int, prompt_width: int, new_tokens: int,
                       ) -> GenerationResult:
    """First-token latency, whole-generation latency and decode speed of one model's two slots."""
    first = latency_stats(ttft.seconds, batch_size, tokens_per_batch=batch_size)
    whole = latency_stats(full.seconds, batch_size, tokens_per_batch=batch_size * new_tokens)
    decode_s = whole.mean_s - first.mean_s
    assert ttft.memory is not None and full.memory is not None
    memory = full.memory if full.memory.rss_peak_bytes >= ttft.memory.rss_peak_bytes else ttft.memory
    return GenerationResult(
        batch_size=batch_size,
        prompt_length=prompt_width,
        new_tokens=new_tokens,
        cold_s=full.cold_s,
        time_to_first_token=first,
        generate=whole,
        decode_tokens_per_s=batch_size * (new_tokens - 1) / decode_s if decode_s > 0 else None,
        memory=memory,
    )
