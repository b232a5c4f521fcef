"""The run's benchmark stage and ``cardgen bench``: load the models, measure them interleaved, fill the record.

:func:`benchmark_stage` (called by the pipeline through ``cardgen.benchmark.benchmark_stage``) loads the base
checkpoint next to the fine-tuned model, times loading both, then measures them in the same process with the run's
``benchmark:`` settings: fixed synthetic shapes, the evaluation engine on real examples of the eval split, and for
causal LMs the first token and decoding. :func:`bench_checkpoints` does the same for checkpoints on disk or the Hub.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from collections.abc import Hashable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardgen.bench_record import BenchmarkRecord, EvalSetResult
from cardgen.benchmark import (
    PRECISIONS,
    autocast_dtype,
    benchmark_generation,
    benchmark_models,
    size_on_disk,
    timed,
)
from cardgen.console import NullProgress, Progress
from cardgen.errors import ConfigError, ModelError
from cardgen.timing import _run_interleaved, _Slot, latency_stats

if TYPE_CHECKING:
    from cardgen.config import RunConfig
    from cardgen.models import LoadedModel

STAGE_ROUNDS = 2  # interleaved rounds in a run: enough to spread drift over both models, short on CPU
EVAL_SET_EXAMPLES = 256  # real examples timed through the evaluation engine (the first ones of the eval split)
EVAL_SET_PASSES = 2  # timed passes over them per model, after the cold pass
NEW_TOKENS = 16  # generated per prompt for the causal-LM decode speed
PROMPT_LENGTH = 32
CHECKPOINT_HINT = "give a checkpoint directory (save_pretrained), a .gguf file, a pkg: path or a Hub id"


# ---------------------------------------------------------------------------------------------------------------
# The run's stage


def benchmark_stage(cfg: RunConfig, task: Any, loaded: LoadedModel, data: Any, record: Any,
                    progress: Progress | None = None) -> None:
    """Measure the base and the fine-tuned model (or the one model of a run without training) and set
    ``record.benchmark``.

    The base checkpoint ``cfg.model`` is loaded the way the run loaded it (same task head) and moved to the
    fine-tuned model's device. The fine-tuned model is saved to a temporary directory once, to measure its size
    on disk and how long it takes to load.
    """
    progress = progress or NullProgress()
    start = time.perf_counter()
    b = cfg.benchmark
    device = next(loaded.model.parameters()).device
    base_path = _checkpoint_path(cfg)
    models: dict[str, tuple[Any, Any]] = {}
    load_s: dict[str, float] = {}
    sizes: dict[str, int | None] = {}
    notes: list[str] = []
    if record.training is not None:
        def load_base() -> Any:
            base = task.load_model(cfg, data.label_names or None, tokenizer=loaded.tokenizer)
            base.model.to(device).eval()
            return base.model

        progress.note(f"loading the base model {cfg.model.name_or_path} to measure it alongside")
        base_model, load_s["base"] = timed(load_base, device=device)
        models["base"] = (base_model, loaded.tokenizer)
        sizes["base"] = size_on_disk(base_path) if base_path else None
        ft_size, ft_load, note = _saved_size_and_load(loaded.model, device)
        models["fine-tuned"] = (loaded.model, loaded.tokenizer)
        sizes["fine-tuned"], notes = ft_size, [note] if note else []
        if ft_load is not None:
            load_s["fine-tuned"] = ft_load
    else:
        models["model"] = (loaded.model, loaded.tokenizer)
        load_s["model"] = loaded.load_seconds
        sizes["model"] = size_on_disk(base_path) if base_path else None
    causal = task.NAME == "causal-lm"
    length = b.sequence_length
    progress.note(f"forward passes at batch sizes {', '.join(map(str, b.batch_sizes))}, {length} tokens")
    bench = benchmark_models(
        models, batch_sizes=b.batch_sizes, sequence_length=length, warmup=b.warmup,
        min_iterations=b.min_iterations, min_seconds=b.min_seconds, precision=b.precision, compile=b.compile,
        rounds=STAGE_ROUNDS, load_s=load_s,
    )
    for name, entry in bench.models.items():
        entry.size_on_disk_bytes = sizes.get(name)
        entry.checkpoint = (str(base_path) if base_path else cfg.model.name_or_path) if name != "fine-tuned" else ""
    if causal:
        progress.note(f"generation: first token and {NEW_TOKENS} new tokens")
        benchmark_generation(
            models, batch_size=1, prompt_length=min(PROMPT_LENGTH, length), new_tokens=NEW_TOKENS,
            warmup=min(b.warmup, 1), min_iterations=max(2, b.min_iterations // 2), min_seconds=b.min_seconds / 2,
            precision=b.precision, rounds=STAGE_ROUNDS, record=bench,
        )
    split = cfg.evaluation.split
    frame = data.frames.get(split)
    if frame is not None and len(frame):
        progress.note(f"evaluation engine on {min(len(frame), EVAL_SET_EXAMPLES)} {split} examples")
        results = eval_set_throughput(models, frame, split=split, batch_size=cfg.evaluation.batch_size,
                                      max_length=cfg.data.max_length)
        if results is None:
            notes.append("no eval-set throughput: this task's examples have no text column cardgen can time")
        else:
            for name, result in results.items():
                bench.models[name].eval_set = result
    bench.settings.notes.extend(notes)
    _finish(bench, start)
    record.benchmark = bench
    del models
    gc.collect()


def _checkpoint_path(cfg: RunConfig) -> Path | None:
    """The base checkpoint's local directory (or GGUF file), None for a Hub id."""
    from cardgen.models import resolve_source

    directory, gguf = resolve_source(cfg.model)
    path = Path(directory) / gguf if gguf else Path(directory)
    return path if path.exists() else None


def _saved_size_and_load(model: Any, device: Any) -> tuple[int | None, float | None, str | None]:
    """Save ``model`` as safetensors to a temporary directory: (size on disk, seconds to load it back onto
    ``device``, a note when it cannot be saved)."""
    try:
        with tempfile.TemporaryDirectory(prefix="cardgen-bench-") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            size = size_on_disk(tmp)
            dtype = next(model.parameters()).dtype
            cls = type(model)

            def load() -> Any:
                return cls.from_pretrained(tmp, dtype=dtype).to(device)

            reloaded, seconds = timed(load, device=device)
            del reloaded
            return size, seconds, None
    except (OSError, ValueError, RuntimeError, NotImplementedError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, None, f"fine-tuned size and load time not measured: saving it failed ({first})"


def _finish(bench: BenchmarkRecord, start: float) -> None:
    bench.seconds = round(time.perf_counter() - start, 3)
    if hasattr(os, "getloadavg"):
        bench.load_average = [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------------------------------------
# Real examples through the evaluation engine


def _texts(frame: Any) -> tuple[list[str], list[str] | None, bool] | None:
    """(texts, second texts or None, truncate only the second) of a task's frame; None when it has no text."""
    columns = set(frame.columns)
    if "text" in columns:
        pair = frame["text_pair"].tolist() if "text_pair" in columns else None
        return [str(t) for t in frame["text"].tolist()], pair, False
    if {"question", "context"} <= columns:
        return frame["question"].tolist(), frame["context"].tolist(), True
    return None


def _predict_step(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    out = model(**batch)
    logits = out.logits if hasattr(out, "logits") else out[0]
    # A small new tensor per batch: a slice would keep every batch's full logits alive until the end.
    return {"prediction": logits[:, 0].argmax(-1) if logits.dim() == 3 else logits.argmax(-1)}


def eval_set_throughput(models: dict[str, tuple[Any, Any]], frame: Any, *, split: str, batch_size: int,
                        max_length: int, num_examples: int = EVAL_SET_EXAMPLES,
                        passes: int = EVAL_SET_PASSES) -> dict[str, EvalSetResult] | None:
    """Time the evaluation engine (length-sorted batches, dynamic padding) over the first ``num_examples``
    examples of ``frame`` for every model, interleaved: a cold pass each (memory tracked), then ``passes`` timed
    passes each, one per round. None when the frame has no text column."""
    from cardgen.engine import run_engine

    texts = _texts(frame.iloc[:num_examples])
    if texts is None:
        return None
    first, second, only_second = texts
    slots: dict[Hashable, _Slot] = {}
    outputs: dict[str, Any] = {}
    for name, (model, tokenizer) in models.items():
        limit = getattr(tokenizer, "model_max_length", None)
        length = min(max_length, limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else max_length
        enc = tokenizer(first, second, truncation="only_second" if only_second else True, max_length=length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        features = [{k: enc[k][i] for k in keys} for i in range(len(first))]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        device = next(model.parameters()).device
        slots[name] = _Slot(call=partial(run_engine, model, features, _predict_step, batch_size=batch_size,
                                         pad_token_id=pad), device=device)

    def keep(key: Hashable, output: Any) -> None:
        outputs[str(key)] = output

    _run_interleaved(slots, warmup=0, min_iterations=passes, min_seconds=0.0, rounds=passes, check=keep)
    results = {}
    for name in models:
        slot, engine = slots[name], outputs[name]
        assert slot.memory is not None
        results[name] = EvalSetResult(
            split=split, num_examples=len(first), batch_size=batch_size, max_length=max_length,
            real_tokens=engine.real_tokens, processed_tokens=engine.processed_tokens,
            padding_efficiency=round(engine.padding_efficiency, 4), cold_s=slot.cold_s,
            latency=latency_stats(slot.seconds, len(first), tokens_per_batch=engine.real_tokens),
            memory=slot.memory,
        )
    return results


# ---------------------------------------------------------------------------------------------------------------
# cardgen bench


def parse_batch_sizes(text: str | Sequence[int], flag: str = "--batch-sizes") -> list[int]:
    """``"1,32"`` -> ``[1, 32]``; every size an integer >= 1.

    Raises:
        ConfigError: Anything else, naming ``flag``.
    """
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        sizes = [int(p) for p in parts if p != ""]
    except (TypeError, ValueError):
        sizes = []
    if not sizes or any(s < 1 for s in sizes) or len(sizes) != len(parts):
        raise ConfigError(f"`{flag}` must be a comma-separated list of integers >= 1 (got {text!r})",
                          f"e.g. {flag} 1,32")
    return list(dict.fromkeys(sizes))


def _model_class(config: Any) -> Any:
    """The class a checkpoint was saved as (its ``architectures``), else a causal LM for decoder model types
    (GGUF files carry no architectures), else the bare model."""
    import transformers
    from transformers import AutoModel, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls
    if getattr(config, "model_type", None) in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return AutoModelForCausalLM
    return AutoModel


def load_checkpoint(name: str, device: Any, like: Any = None) -> tuple[Any, Any, float, int | None, str]:
    """Load a checkpoint for benchmarking: (model on ``device`` in eval mode, tokenizer, load seconds, size on
    disk, resolved path or id). ``like`` (a loaded model) makes it load with that model's class and head size,
    so a base model is measured with the fine-tuned one's architecture."""
    from transformers import AutoConfig

    from cardgen.config import ModelConfig, package_path
    from cardgen.models import check_local_checkpoint, load_pretrained, load_tokenizer, resolve_source

    resolved = package_path(name) if name.startswith("pkg:") else name
    cfg = ModelConfig(name_or_path=resolved)
    try:
        directory, gguf = resolve_source(cfg)
        check_local_checkpoint(cfg, directory, gguf)
    except ModelError as exc:
        raise ModelError(exc.message, CHECKPOINT_HINT) from exc
    try:
        config = AutoConfig.from_pretrained(directory, gguf_file=gguf)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot read the model config of {name}: {first}",
                         "give a checkpoint directory (with config.json), a .gguf file or a Hub id") from exc
    kwargs: dict[str, Any] = {}
    if like is not None:
        cls = type(like)
        labels = getattr(like.config, "num_labels", None)
        if labels is not None and "ForSequenceClassification" in cls.__name__:
            kwargs = {"num_labels": labels, "ignore_mismatched_sizes": True}
    else:
        cls = _model_class(config)
    tokenizer = load_tokenizer(cfg, directory, gguf)

    def load() -> Any:
        return load_pretrained(cls, cfg, tokenizer=tokenizer, **kwargs).model.to(device).eval()

    model, seconds = timed(load, device=device)
    path = Path(directory) / gguf if gguf else Path(directory)
    return model, tokenizer, seconds, size_on_disk(path) if path.exists() else None, str(path if path.exists()
                                                                                          else name)


def bench_checkpoints(checkpoint: str, vs: str | None = None, *, batch_sizes: Sequence[int] | str = (1, 32),
                      sequence_length: int = 64, precision: str = "fp32", compile: bool = False, warmup: int = 2,
                      min_iterations: int = 10, min_seconds: float = 1.0, rounds: int = 3,
                      new_tokens: int = NEW_TOKENS, device: str | None = None) -> BenchmarkRecord:
    """``cardgen bench``: latency, throughput, memory, load time and size of ``checkpoint`` (and of ``vs``,
    measured interleaved in the same process), on synthetic inputs; causal LMs also get the first token and
    decode speed.

    Raises:
        ConfigError: A bad batch size, sequence length or precision (named by its flag).
        ModelError: A checkpoint that cannot be loaded.
    """
    from cardgen.models import pick_device

    start = time.perf_counter()
    sizes = parse_batch_sizes(batch_sizes)
    if not isinstance(sequence_length, int) or sequence_length < 1:
        raise ConfigError(f"`--seq-len` must be an integer >= 1 (got {sequence_length!r})", "e.g. --seq-len 64")
    device = device or pick_device()
    if precision not in PRECISIONS:
        raise ConfigError(f"`--precision` must be one of {', '.join(PRECISIONS)} (got {precision!r})",
                          "fp32 anywhere, bf16 or fp16 on a GPU, bf16 on a CPU with native bf16")
    try:
        autocast_dtype(precision, device)
    except ConfigError as exc:
        raise ConfigError(exc.message.replace("`benchmark.precision`", "`--precision`"), exc.hint) from exc
    model, tokenizer, model_load, model_size, model_path = load_checkpoint(checkpoint, device)
    models: dict[str, tuple[Any, Any]] = {}
    meta: dict[str, tuple[float, int | None, str]] = {}
    if vs is not None:
        base, base_tok, base_load, base_size, base_path = load_checkpoint(vs, device, like=model)
        models["base"] = (base, base_tok)
        meta["base"] = (base_load, base_size, base_path)
    models["model"] = (model, tokenizer)
    meta["model"] = (model_load, model_size, model_path)
    bench = benchmark_models(models, batch_sizes=sizes, sequence_length=sequence_length, warmup=warmup,
                             min_iterations=min_iterations, min_seconds=min_seconds,
                             precision=precision,  # type: ignore[arg-type]
                             compile=compile, rounds=rounds, load_s={k: v[0] for k, v in meta.items()})
    for name, (_, size, path) in meta.items():
        bench.models[name].size_on_disk_bytes = size
        bench.models[name].checkpoint = path
    if all(_generates(m) for m, _ in models.values()):
        benchmark_generation(models, batch_size=1, prompt_length=min(PROMPT_LENGTH, sequence_length),
                             new_tokens=new_tokens, warmup=min(warmup, 1), min_iterations=max(2, min_iterations // 2),
                             min_seconds=min_seconds / 2, precision=precision,  # type: ignore[arg-type]
                             rounds=rounds, record=bench)
    _finish(bench, start)
    return bench


def _generates(model: Any) -> bool:
    can = getattr(model, "can_generate", None)
    config = getattr(model, "config", None)
    return bool(can and can()) and not getattr(config, "is_encoder_decoder", False)



def parse_number(text: str | float, flag: str, *, integer: bool = False, minimum: float = 1) -> float:
    """A command-line number: an integer (``integer``) or a finite float, at least ``minimum``.

    Raises:
        ConfigError: Anything else, naming ``flag``.
    """
    kind = "an integer" if integer else "a number"
    try:
        value = float(int(str(text).strip())) if integer else float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not value >= minimum or value == float("inf"):
        raise ConfigError(f"`{flag}` must be {kind} >= {minimum:g} (got {text!r})", "see cardgen bench --help")
    return value
