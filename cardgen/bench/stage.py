"""The run's benchmark stage: base and fine-tuned loaded side by side and measured interleaved.

Loads the base checkpoint next to the fine-tuned model, times loading both, then measures them in the same process
with the run's ``benchmark:`` settings: fixed synthetic shapes, the evaluation engine on real examples of the eval
split, and for causal LMs the first token and decoding. Returns the BenchmarkRecord.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Hashable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardgen.adapter_files import adapter_size
from cardgen.adapters import is_peft_model
from cardgen.bench.scenarios import benchmark_generation, benchmark_models, finish_record
from cardgen.bench.timing import Slot, latency_stats, run_interleaved, timed
from cardgen.config import NEW_TOKENS, PROMPT_LENGTH
from cardgen.console import NullProgress, Progress
from cardgen.errors import CardgenError, first_line
from cardgen.models import size_on_disk
from cardgen.record import BenchmarkRecord, EvalSetResult

if TYPE_CHECKING:
    from cardgen.config import RunConfig
    from cardgen.models import LoadedModel


STAGE_ROUNDS = 2  # interleaved rounds in a run: enough to spread drift over both models, short on CPU


EVAL_SET_EXAMPLES = 256  # real examples timed through the evaluation engine (the first ones of the eval split)


EVAL_SET_PASSES = 2  # timed passes over them per model, after the cold pass


def benchmark_stage(cfg: RunConfig, task: Any, loaded: LoadedModel, data: Any, *, trained: bool,
                    progress: Progress | None = None) -> BenchmarkRecord:
    """Measure the base and the fine-tuned model (or the one model of a run without training, ``trained``
    False) and return the BenchmarkRecord.

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
    if trained:
        def load_base() -> Any:
            base = task.load_model(cfg, data.label_names or None, tokenizer=loaded.tokenizer)
            base.model.to(device).eval()
            return base.model

        progress.note(f"loading the base model {cfg.model.name_or_path} to measure it alongside")
        base_model, load_s["base"] = timed(load_base, device=device)
        models["base"] = (base_model, loaded.tokenizer)
        sizes["base"] = size_on_disk(base_path) if base_path else None
        ft_size, ft_load, note = _saved_size_and_load(loaded.model, device, loaded.tokenizer)
        models["fine-tuned"] = (loaded.model, loaded.tokenizer)
        sizes["fine-tuned"], notes = ft_size, [note] if note else []
        if ft_load is not None:
            load_s["fine-tuned"] = ft_load
    else:
        models["model"] = (loaded.model, loaded.tokenizer)
        load_s["model"] = loaded.load_seconds
        sizes["model"] = (adapter_size(base_path) or size_on_disk(base_path)) if base_path else None
    if is_peft_model(loaded.model):
        notes += _add_merged(models, load_s, sizes, loaded, device, progress)
    causal = task.NAME in ("causal-lm", "seq2seq")  # both generate: first token and decode speed
    length = b.sequence_length
    progress.note(f"forward passes at batch sizes {', '.join(map(str, b.batch_sizes))}, {length} tokens")
    bench = benchmark_models(
        models, batch_sizes=b.batch_sizes, sequence_length=length, warmup=b.warmup,
        min_iterations=b.min_iterations, min_seconds=b.min_seconds, precision=b.precision, compile=b.compile,
        rounds=STAGE_ROUNDS, load_s=load_s,
    )
    for name, entry in bench.models.items():
        entry.size_on_disk_bytes = sizes.get(name)
        own = name in ("base", "model")  # loaded from the checkpoint as it is (the others: not saved yet)
        entry.checkpoint = (str(base_path) if base_path else cfg.model.name_or_path) if own else ""
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
    finish_record(bench, start)
    del models
    gc.collect()
    return bench


def _checkpoint_path(cfg: RunConfig) -> Path | None:
    """The base checkpoint's local directory (or GGUF file), None for a Hub id."""
    from cardgen.models import resolve_source

    directory, gguf = resolve_source(cfg.model)
    path = Path(directory) / gguf if gguf else Path(directory)
    return path if path.exists() else None


MERGED_SUFFIX = " (merged)"  # the name of an adapted model's merged copy in the benchmark


def _add_merged(models: dict[str, tuple[Any, Any]], load_s: dict[str, float], sizes: dict[str, int | None],
                loaded: LoadedModel, device: Any, progress: Progress) -> list[str]:
    """An adapted model is also measured merged (the adapter folded into the weights: what a user gets from
    merge_and_unload), next to the unmerged one; notes when it cannot be."""
    from cardgen.adapters import describe_quantization, merged_copy, unwrapped

    if describe_quantization(unwrapped(loaded.model)) is not None:
        return ["no merged model measured: the base's weights are 4-bit (merging would lose precision)"]
    name = next(iter(n for n in models if n != "base")) + MERGED_SUFFIX
    progress.note("merging the adapter into a copy of the model to measure it merged")
    merged = merged_copy(loaded.model)
    models[name] = (merged, loaded.tokenizer)
    size, seconds, note = _saved_size_and_load(merged, device, loaded.tokenizer)
    sizes[name] = size
    if seconds is not None:
        load_s[name] = seconds
    return [note] if note else []


def _saved_size_and_load(model: Any, device: Any, tokenizer: Any) -> tuple[int | None, float | None, str | None]:
    """Save ``model`` as safetensors to a temporary directory: (size on disk, seconds to load it back onto
    ``device``, a note when it cannot be saved). An adapter is saved alone, and loading it means loading its base
    and putting the adapter on it."""
    if is_peft_model(model):
        from cardgen.adapters import saved_size_and_load

        try:
            size, seconds = saved_size_and_load(model, tokenizer, device, timed)
        except (OSError, ValueError, RuntimeError, CardgenError) as exc:
            return None, None, f"adapter size and load time not measured: {first_line(exc)}"
        return size, seconds, None
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
        first = first_line(exc)
        return None, None, f"fine-tuned size and load time not measured: saving it failed ({first})"


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
    slots: dict[Hashable, Slot] = {}
    outputs: dict[str, Any] = {}
    for name, (model, tokenizer) in models.items():
        limit = getattr(tokenizer, "model_max_length", None)
        length = min(max_length, limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else max_length
        enc = tokenizer(first, second, truncation="only_second" if only_second else True, max_length=length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        features = [{k: enc[k][i] for k in keys} for i in range(len(first))]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        device = next(model.parameters()).device
        slots[name] = Slot(call=partial(run_engine, model, features, _predict_step, batch_size=batch_size,
                                         pad_token_id=pad), device=device)

    def keep(key: Hashable, output: Any) -> None:
        outputs[str(key)] = output

    run_interleaved(slots, warmup=0, min_iterations=passes, min_seconds=0.0, rounds=passes, check=keep)
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
