"""LoRA with peft for every task, in one place, and the memory options for large models.

A task loads its model (``task.load_model``); when the config has a ``peft:`` section, :func:`apply_adapter` then
wraps that model with a LoRA adapter (``peft.get_peft_model``). Nothing in a task knows about adapters, so a new task
gets LoRA without code of its own: peft's task type follows from the model class the task loaded
(``...ForSequenceClassification`` -> SEQ_CLS, ``...ForCausalLM`` -> CAUSAL_LM, an encoder-decoder LM -> SEQ_2_SEQ_LM,
``...ForQuestionAnswering`` -> QUESTION_ANS; anything else a plain PeftModel).

The same in-memory model serves as the base: :func:`adapter_disabled` runs it with the adapter switched off
(``PeftModel.disable_adapter()``: LoRA layers bypassed, ``modules_to_save`` back to their original copies), so
comparing base and fine-tuned costs no second load. A saved adapter (``adapter_config.json``) is loaded onto its
base by ``models.load_pretrained`` (see :mod:`cardgen.adapter_files`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cardgen.adapter_files import AdapterSource, adapter_size
from cardgen.config import RunConfig
from cardgen.errors import ConfigError, ModelError, first_line
from cardgen.models import LoadedModel, num_parameters, resolve_source, weights_size_on_disk
from cardgen.record import AdapterRecord, ResourcesRecord

MERGED_DIR = "merged"  # the merged full weights, inside the output directory (peft.merge / --merge)
BASE_BY_DISABLING = "the adapter disabled on the same in-memory model (no second model loaded)"

# peft's task type from the class a task loaded (the suffix of its name)
TASK_TYPES = (("ForSequenceClassification", "SEQ_CLS"), ("ForCausalLM", "CAUSAL_LM"),
              ("ForQuestionAnswering", "QUESTION_ANS"), ("ForTokenClassification", "TOKEN_CLS"))


# ---------------------------------------------------------------------------------------------------------------
# Checks before anything is loaded


def check_options(cfg: RunConfig) -> None:
    """Refuse adapter and memory settings this machine cannot run, before any data or model is loaded.

    Raises:
        ConfigError: One line naming the key: peft missing, 4-bit weights without CUDA or bitsandbytes, 4-bit
            weights to fine-tune without an adapter, a precision the machine cannot train in.
    """
    import importlib.util

    if cfg.peft is not None and importlib.util.find_spec("peft") is None:
        raise ConfigError("the `peft:` section needs the peft package, which is not installed",
                          "pip install 'cardgen[peft]'")
    if cfg.model.quantization == "4bit":
        _check_4bit(cfg)
    if cfg.training is not None:
        from cardgen.adapter_files import find_adapter

        adapter = find_adapter(cfg.model.name_or_path, cfg.model.revision)
        if adapter is not None:
            raise ModelError(f"{cfg.model.name_or_path} is a LoRA adapter (on {adapter.base}); cardgen trains a new "
                             "adapter on a base model",
                             "set model.name_or_path to its base and add a peft: section, or pass --no-train to "
                             "evaluate and document the adapter")
    if cfg.training is not None:
        from cardgen.train import precision_arguments

        precision_arguments(cfg.training.mixed_precision)


def _check_4bit(cfg: RunConfig) -> None:
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise ConfigError("`model.quantization: 4bit` (QLoRA) needs a CUDA GPU: bitsandbytes 4-bit weights run only "
                          "there, and this machine has none",
                          "drop model.quantization to train LoRA on full-precision weights (peft: alone)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("`model.quantization: 4bit` needs the bitsandbytes package, which is not installed",
                          "pip install 'cardgen[qlora]'")
    if cfg.training is not None and cfg.peft is None:
        raise ConfigError("`model.quantization: 4bit` weights cannot be fine-tuned directly",
                          "add a peft: section to train a LoRA adapter on them (QLoRA), or pass --no-train")
    if cfg.peft is not None and cfg.peft.merge:
        raise ConfigError("`peft.merge` cannot merge into 4-bit weights without losing precision",
                          "drop peft.merge; merge later into a 16-bit copy of the base with peft's merge_and_unload")
    if cfg.model.gguf_file or cfg.model.name_or_path.endswith(".gguf"):
        raise ConfigError("`model.quantization: 4bit` cannot re-quantize a GGUF file",
                          "use a safetensors copy of the model, or drop model.quantization")


def describe_quantization(model: Any) -> str | None:
    """The quantization of a loaded model's weights in words, None for full precision."""
    qc = getattr(getattr(model, "config", None), "quantization_config", None)
    if qc is None or not getattr(qc, "load_in_4bit", False):
        return None
    compute = str(getattr(qc, "bnb_4bit_compute_dtype", "")).removeprefix("torch.")
    kind = str(getattr(qc, "bnb_4bit_quant_type", "nf4")).upper()
    double = ", double quantization" if getattr(qc, "bnb_4bit_use_double_quant", False) else ""
    return f"4-bit {kind} (bitsandbytes){double}, compute {compute}"


# ---------------------------------------------------------------------------------------------------------------
# A new adapter


def is_peft_model(model: Any) -> bool:
    """Whether ``model`` carries a peft adapter."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def task_type(model: Any) -> str | None:
    """peft's task type for the class a task loaded (None: a plain PeftModel, e.g. masked LM): the transformers
    auto class that lists it (``GPT2LMHeadModel`` is a causal LM), else the end of its name."""
    from transformers.models.auto import modeling_auto as auto

    name = type(model).__name__
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False) and hasattr(model, "generate"):
        return "SEQ_2_SEQ_LM" if seq2seq_wrapper_works(model) else None
    for mapping, kind in (("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES", "SEQ_CLS"),
                          ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "CAUSAL_LM"),
                          ("MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES", "QUESTION_ANS"),
                          ("MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES", "TOKEN_CLS")):
        names = getattr(auto, mapping, {}).values()
        if any(name == n or isinstance(n, (tuple, list)) and name in n for n in names):
            return kind
    return next((kind for suffix, kind in TASK_TYPES if name.endswith(suffix)), None)


SEQ2SEQ_NOTE = ("the adapter is a plain PeftModel (load it with AutoPeftModel): peft's seq2seq wrapper "
                "(task type SEQ_2_SEQ_LM) calls `_prepare_encoder_decoder_kwargs_for_generation`, which this "
                "transformers version no longer has; LoRA, generation and disable_adapter() work the same")


def seq2seq_wrapper_works(model: Any) -> bool:
    """Whether peft's PeftModelForSeq2SeqLM can wrap ``model`` (it needs a generation hook transformers 5 removed)."""
    return hasattr(model, "_prepare_encoder_decoder_kwargs_for_generation")


def default_target_modules(model: Any) -> list[str] | str | None:
    """peft's per-architecture default (None lets peft pick it); an encoder-decoder built from two known
    architectures (``EncoderDecoderModel``) gets the union of its halves' defaults."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) in DEFAULTS:
        return None
    halves = [getattr(getattr(config, part, None), "model_type", None) for part in ("encoder", "decoder")]
    found = [m for half in halves if half in DEFAULTS for m in DEFAULTS[half]]
    return sorted(set(found)) or None


def fresh_modules(newly_initialized: list[str]) -> list[str]:
    """The smallest modules that hold every newly initialised weight (``classifier.weight`` -> ``classifier``):
    trained and saved in full, or they would stay random and a saved adapter would not reproduce the model."""
    modules = sorted({key.rsplit(".", 1)[0] for key in newly_initialized if "." in key})
    return [m for m in modules if not any(m.startswith(f"{other}.") for other in modules)]


def saved_modules(configured: list[str] | None, newly_initialized: list[str]) -> list[str]:
    """``peft.modules_to_save`` plus every module with freshly initialised weights that it does not cover already:
    a random module left frozen would make the saved adapter describe another model than the one evaluated."""
    from cardgen.adapter_files import covered_by_saved_modules

    chosen = list(configured or [])
    return chosen + [m for m in fresh_modules(newly_initialized) if not covered_by_saved_modules(f"{m}.w", chosen)]


def lora_config(cfg: RunConfig, model: Any, newly_initialized: list[str]) -> Any:
    """The ``peft.LoraConfig`` of the ``peft:`` section for ``model``."""
    from peft import LoraConfig

    p = cfg.peft
    assert p is not None
    if p.target_modules is None:
        targets: Any = default_target_modules(model)
    elif p.target_modules == ["all-linear"]:
        targets = "all-linear"
    else:
        targets = list(p.target_modules)
    saved = saved_modules(p.modules_to_save, newly_initialized)
    # A module trained in full needs no low-rank update on top (all-linear would otherwise pick e.g. a pooler).
    exclude = saved if targets == "all-linear" and saved else None
    return LoraConfig(r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout, target_modules=targets, bias=p.bias,
                      modules_to_save=saved or None, exclude_modules=exclude, task_type=task_type(model))


def base_reference(cfg: RunConfig) -> str:
    """The base as adapter_config.json names it: the loaded directory, ``.gguf`` file or Hub id."""
    directory, gguf = resolve_source(cfg.model)
    if gguf:
        return str(Path(directory).expanduser().resolve() / gguf)
    path = Path(directory).expanduser()
    return str(path.resolve()) if path.exists() else directory


def prepare_adapter(cfg: RunConfig, loaded: LoadedModel) -> AdapterRecord | None:
    """After a task loaded its model: wrap it with a new LoRA adapter when the config has a ``peft:`` section, or
    describe the saved adapter the checkpoint was; None for a model without one."""
    if loaded.adapter is not None:
        return describe(loaded.model, base_newly_initialized=loaded.base_newly_initialized, source=loaded.adapter)
    if cfg.peft is not None:
        return apply_adapter(cfg, loaded)
    return None


def apply_adapter(cfg: RunConfig, loaded: LoadedModel) -> AdapterRecord:
    """Wrap ``loaded.model`` with a new LoRA adapter as the ``peft:`` section says; the base's weights freeze.

    Raises:
        ConfigError: peft refuses the settings (e.g. no default target modules for this architecture).
        ModelError: The checkpoint already is an adapter.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training

    if is_peft_model(loaded.model):
        raise ModelError(f"{cfg.model.name_or_path} is a LoRA adapter; cardgen trains a new adapter on a base model",
                         "set model.name_or_path to the adapter's base, or pass --no-train to document the adapter")
    config = lora_config(cfg, loaded.model, loaded.newly_initialized)
    model = loaded.model
    if cfg.model.quantization == "4bit":
        checkpointing = bool(cfg.training and cfg.training.gradient_checkpointing)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:
        text = first_line(exc)
        if "target_modules" in text:
            raise ConfigError(f"`peft.target_modules`: peft has no default for {type(model).__name__} "
                              f"(model type {getattr(model.config, 'model_type', '?')!r})",
                              "name the layers to adapt, e.g. peft.target_modules: [q_proj, v_proj], "
                              "or [all-linear]") from exc
        raise ConfigError(f"peft refused the `peft:` settings: {text}", "fix the peft section") from exc
    settings = peft_model.peft_config[peft_model.active_adapter]
    settings.base_model_name_or_path = base_reference(cfg)
    settings.revision = cfg.model.revision
    loaded.model = peft_model
    loaded.base_newly_initialized = list(loaded.newly_initialized)
    record = describe(peft_model, base_newly_initialized=loaded.newly_initialized)
    record.target_modules_default = cfg.peft is not None and cfg.peft.target_modules is None
    if getattr(model.config, "is_encoder_decoder", False) and record.task_type is None:
        record.notes.append(SEQ2SEQ_NOTE)
    return record


# ---------------------------------------------------------------------------------------------------------------
# What an adapter is


def saved_module_names(model: Any) -> list[str]:
    """Modules the adapter trains and saves in full (peft's ModulesToSaveWrapper), by name."""
    from peft.utils import ModulesToSaveWrapper

    prefix = "base_model.model."
    return sorted(name.removeprefix(prefix) for name, module in model.named_modules()
                  if isinstance(module, ModulesToSaveWrapper))


def adapter_parameters(model: Any) -> int:
    """Parameters the adapter holds (trained, and saved with it): the LoRA matrices, the trained copies of the
    saved modules, and the biases peft trains with ``bias: all`` / ``lora_only``."""
    bias = model.peft_config[model.active_adapter].bias
    total = 0
    for name, p in model.named_parameters():
        if ".original_module." in name:
            continue
        if ".lora_" in name or ".modules_to_save." in name or name.endswith(".bias") and (
                bias == "all" or bias == "lora_only" and ".base_layer." in name):
            total += p.numel()
    return total


def describe(model: Any, *, base_newly_initialized: list[str], source: AdapterSource | None = None) -> AdapterRecord:
    """The AdapterRecord of a PeftModel (a new adapter, or one loaded from ``source``)."""
    settings = model.peft_config[model.active_adapter]
    _, total = model.get_nb_trainable_parameters()
    targets = settings.target_modules
    targets = [targets] if isinstance(targets, str) else sorted(targets or [])
    task = settings.task_type
    return AdapterRecord(
        method=str(getattr(settings.peft_type, "value", settings.peft_type)).lower(),
        peft_type=str(getattr(settings.peft_type, "value", settings.peft_type)),
        task_type=str(getattr(task, "value", task)) if task else None,
        r=int(settings.r), alpha=float(settings.lora_alpha), dropout=float(settings.lora_dropout),
        target_modules=targets, modules_to_save=saved_module_names(model),
        trainable_parameters=adapter_parameters(model), total_parameters=int(total),
        base_model=str(settings.base_model_name_or_path or ""),
        source="loaded" if source is not None else "trained", loaded_from=source.path if source else None,
        target_modules_default=False, quantization=describe_quantization(model.get_base_model()),
        full_size_bytes=base_weight_bytes(model),
        base_newly_initialized=list(base_newly_initialized),
    )


def base_weight_bytes(model: Any) -> int:
    """Bytes of the base model's weights as they would be saved (tied weights once): the full model's size, which
    the merged weights also have."""
    base = model.get_base_model() if is_peft_model(model) else model
    seen: dict[int, Any] = {}
    for name, p in base.named_parameters():
        if "lora_" in name or ".modules_to_save." in name:
            continue
        seen.setdefault(id(p), p)
    for name, b in base.named_buffers():
        if "lora_" not in name and ".modules_to_save." not in name and b.is_floating_point():
            seen.setdefault(id(b), b)
    return int(sum(p.numel() * p.element_size() for p in seen.values()))


# ---------------------------------------------------------------------------------------------------------------
# The base on the same model


@contextlib.contextmanager
def adapter_disabled(model: Any) -> Iterator[Any]:
    """``model`` run as its base: the adapter bypassed (and saved modules back to their originals) inside the block."""
    with model.disable_adapter():
        yield model


def backbone(model: Any) -> Any:
    """The encoder inside a (possibly adapted) task model, for pooled features: ``bert`` of a classifier."""
    inner = model.get_base_model() if is_peft_model(model) else model
    return getattr(inner, "base_model", inner)


def unwrapped(model: Any) -> Any:
    """The transformers model under an adapter (the model itself when it has none)."""
    return model.get_base_model() if is_peft_model(model) else model


# ---------------------------------------------------------------------------------------------------------------
# Saving


def save_adapter(model: Any, tokenizer: Any, directory: Path, merge: bool) -> None:
    """The adapter (adapter_model.safetensors, adapter_config.json) and the tokenizer into ``directory``; with
    ``merge`` also the merged full weights into ``directory/merged``.

    Merging folds the adapter into the base's weights in place (``merge_and_unload``), so it comes last: the
    in-memory model is the merged one afterwards.
    """
    model.save_pretrained(directory, safe_serialization=True)
    (directory / "README.md").unlink(missing_ok=True)  # peft's own card stub: cardgen writes the card
    tokenizer.save_pretrained(directory)
    if merge:
        merged = model.merge_and_unload()
        target = directory / MERGED_DIR
        merged.save_pretrained(target, safe_serialization=True)
        tokenizer.save_pretrained(target)


def record_saved(record: AdapterRecord, directory: Path) -> None:
    """Sizes on disk of what :func:`save_adapter` wrote into ``directory``."""
    record.adapter_size_bytes = adapter_size(directory)
    merged = directory / MERGED_DIR
    if merged.is_dir():
        record.merged_dir = MERGED_DIR
        record.full_size_bytes = weights_size_on_disk(merged)


def merged_copy(model: Any) -> Any:
    """A merged copy of an adapted model (the adapter folded into the weights), for timing it; the adapted model
    stays as it is."""
    import copy

    return copy.deepcopy(model).merge_and_unload().eval()


def saved_size_and_load(model: Any, tokenizer: Any, device: Any, timed: Any) -> tuple[int | None, float | None]:
    """Save the adapter to a temporary directory: (its size on disk, seconds to load base and adapter back onto
    ``device``, timed by ``timed``)."""
    import tempfile

    from cardgen.config import ModelConfig
    from cardgen.models import load_pretrained

    with tempfile.TemporaryDirectory(prefix="cardgen-adapter-") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        size = adapter_size(tmp)
        base_class = type(model.get_base_model())
        kwargs: dict[str, Any] = {}
        labels = getattr(model.config, "num_labels", None)
        if labels is not None and "ForSequenceClassification" in base_class.__name__:
            kwargs = {"num_labels": labels, "ignore_mismatched_sizes": True}

        def load() -> Any:
            return load_pretrained(base_class, ModelConfig(name_or_path=tmp), tokenizer=tokenizer, **kwargs).model.to(device)

        reloaded, seconds = timed(load, device=device)
        del reloaded
    return size, seconds


# ---------------------------------------------------------------------------------------------------------------
# Resources


def resources(cfg: RunConfig, model: Any) -> ResourcesRecord:
    """What the model holds and how the run makes it fit: trainable parameters, dtype, precision, checkpointing."""
    inner = unwrapped(model)
    total = model.get_nb_trainable_parameters()[1] if is_peft_model(model) else num_parameters(model)
    if cfg.training is None:
        trainable = 0
    elif is_peft_model(model):
        trainable = model.get_nb_trainable_parameters()[0]
    else:
        trainable = sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())
    dtype = getattr(inner, "dtype", None)
    device = next(model.parameters()).device
    t = cfg.training
    return ResourcesRecord(
        device=str(device), load_dtype=str(dtype).removeprefix("torch.") if dtype is not None else "",
        trainable_parameters=int(trainable), total_parameters=int(total),
        mixed_precision=t.mixed_precision if t else "no", gradient_checkpointing=bool(t and t.gradient_checkpointing),
        quantization=describe_quantization(inner),
    )


