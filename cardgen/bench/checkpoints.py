"""``cardgen bench CHECKPOINT [--vs BASE]``: checkpoints on disk or the Hub measured interleaved."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardgen.bench.inputs import PRECISIONS, autocast_dtype
from cardgen.bench.scenarios import benchmark_generation, benchmark_models, finish_record
from cardgen.bench.timing import timed
from cardgen.config import NEW_TOKENS, PROMPT_LENGTH
from cardgen.errors import ConfigError, ModelError, first_line
from cardgen.models import size_on_disk
from cardgen.record import BenchmarkRecord

if TYPE_CHECKING:
    pass


CHECKPOINT_HINT = "give a checkpoint directory (save_pretrained), a .gguf file, a pkg: path or a Hub id"


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

    from cardgen.adapter_files import adapter_class, adapter_size, find_adapter
    from cardgen.adapters import unwrapped
    from cardgen.config import ModelConfig
    from cardgen.files import package_path
    from cardgen.models import (
        base_config,
        check_local_checkpoint,
        load_pretrained,
        load_tokenizer,
        resolve_source,
    )

    resolved = package_path(name) if name.startswith("pkg:") else name
    cfg = ModelConfig(name_or_path=resolved)
    adapter = find_adapter(resolved)  # a LoRA adapter: its base's config and class, the adapter put on it
    try:
        directory, gguf = resolve_source(cfg)
        check_local_checkpoint(cfg, directory, gguf)
        config_dir, config_gguf = resolve_source(base_config(cfg, adapter)) if adapter else (directory, gguf)
    except ModelError as exc:
        raise ModelError(exc.message, CHECKPOINT_HINT) from exc
    try:
        config = AutoConfig.from_pretrained(config_dir, gguf_file=config_gguf)
    except (OSError, ValueError, KeyError) as exc:
        first = first_line(exc)
        raise ModelError(f"cannot read the model config of {name}: {first}",
                         "give a checkpoint directory (with config.json), a .gguf file or a Hub id") from exc
    kwargs: dict[str, Any] = {}
    if like is not None:
        cls = type(unwrapped(like))
        labels = getattr(like.config, "num_labels", None)
        if labels is not None and "ForSequenceClassification" in cls.__name__:
            kwargs = {"num_labels": labels, "ignore_mismatched_sizes": True}
    elif adapter is not None:
        cls, kwargs = adapter_class(adapter, _model_class(config))
    else:
        cls = _model_class(config)
    tokenizer = load_tokenizer(cfg, directory, gguf)

    def load() -> Any:
        return load_pretrained(cls, cfg, tokenizer=tokenizer, **kwargs).model.to(device).eval()

    model, seconds = timed(load, device=device)
    path = Path(directory) / gguf if gguf else Path(directory)
    size = (adapter_size(path) if adapter else size_on_disk(path)) if path.exists() else None
    return model, tokenizer, seconds, size, str(path if path.exists() else name)


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
    from cardgen.preflight import check_bench

    check_bench(model.config, sequence_length, _generates(model))  # before anything is measured
    models: dict[str, tuple[Any, Any]] = {}
    meta: dict[str, tuple[float, int | None, str]] = {}
    if vs is not None:
        base, base_tok, base_load, base_size, base_path = load_checkpoint(vs, device, like=model)
        check_bench(base.config, sequence_length, _generates(base))
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
    finish_record(bench, start)
    return bench


def _generates(model: Any) -> bool:
    """Causal LMs and seq2seq models get the time-to-first-token and decode-speed scenario."""
    can = getattr(model, "can_generate", None)
    return bool(can and can())
