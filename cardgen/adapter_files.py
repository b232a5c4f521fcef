"""Saved adapters on disk or the Hub: is this checkpoint an adapter, and which base does it name?

A directory (or Hub repo) holding ``adapter_config.json`` is a peft adapter: its weights only make sense on top of
the base model that ``base_model_name_or_path`` names (a local directory, a ``.gguf`` file or a Hub id). ``models``
asks here before it loads anything, and :func:`attach` puts a saved adapter onto its loaded base. Nothing here
imports torch or peft at import time (``cardgen.adapters``, which applies new adapters, sits above ``models``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardgen.errors import ModelError, first_line

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class AdapterSource:
    """What ``adapter_config.json`` says about an adapter."""

    path: str  # the adapter as given: a directory or a Hub id
    base: str  # base_model_name_or_path: a local directory, a .gguf file or a Hub id
    base_revision: str | None
    peft_type: str  # "LORA", ...
    task_type: str | None  # "SEQ_CLS", "CAUSAL_LM", ... (None: a plain PeftModel)
    base_class: str | None  # the transformers class the base was loaded as, when peft recorded it
    modules_to_save: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # the whole adapter_config.json


def looks_local(name: str) -> bool:
    """Whether ``name`` is meant as a local path (rather than a Hub id)."""
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def is_adapter_dir(path: str | Path) -> bool:
    """Whether a local directory holds a peft adapter."""
    p = Path(path).expanduser()
    return p.is_dir() and (p / ADAPTER_CONFIG).is_file()


@functools.lru_cache(maxsize=64)
def _hub_adapter_config(repo_id: str, revision: str | None) -> Path | None:
    """adapter_config.json of a Hub repo, None when it holds none or the Hub cannot say (the model loader then
    reports what is wrong with ``repo_id`` itself). Asked once per process: the cache first, then the Hub the way
    transformers asks it (which it does anyway when peft is installed), never in offline mode."""
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        return None
    try:
        cached = try_to_load_from_cache(repo_id, ADAPTER_CONFIG, revision=revision)
    except ValueError:  # not a valid repo id
        return None
    if isinstance(cached, str):
        return Path(cached)
    if cached is not None or constants.HF_HUB_OFFLINE:  # known to have none, or no way to ask
        return None
    from transformers.utils import find_adapter_config_file

    found = find_adapter_config_file(repo_id, revision=revision)
    return Path(found) if found else None


def find_adapter(name_or_path: str, revision: str | None = None) -> AdapterSource | None:
    """The adapter ``name_or_path`` holds, or None when it is an ordinary checkpoint.

    Raises:
        ModelError: An adapter_config.json that is not valid, or names no base model.
    """
    if not name_or_path or name_or_path.endswith(".gguf"):
        return None
    if looks_local(name_or_path):
        if not is_adapter_dir(name_or_path):
            return None
        config_path: Path | None = Path(name_or_path).expanduser() / ADAPTER_CONFIG
    else:
        config_path = _hub_adapter_config(name_or_path, revision)
    if config_path is None:
        return None
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{name_or_path}: {ADAPTER_CONFIG} cannot be read ({first_line(exc)})",
                         "save the adapter again with save_pretrained()") from exc
    if not isinstance(raw, dict):
        raise ModelError(f"{name_or_path}: {ADAPTER_CONFIG} is not a JSON object",
                         "save the adapter again with save_pretrained()")
    base = raw.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        raise ModelError(f"the adapter {name_or_path} names no base model (base_model_name_or_path is empty)",
                         f"set base_model_name_or_path in its {ADAPTER_CONFIG} to the base's directory or Hub id")
    mapping = raw.get("auto_mapping") if isinstance(raw.get("auto_mapping"), dict) else {}
    saved = raw.get("modules_to_save") or []
    return AdapterSource(
        path=name_or_path, base=base, base_revision=raw.get("revision") or None,
        peft_type=str(raw.get("peft_type") or "LORA"), task_type=raw.get("task_type") or None,
        base_class=mapping.get("base_model_class") if mapping else None,
        modules_to_save=[str(m) for m in saved] if isinstance(saved, list) else [], config=raw,
    )


def adapter_size(directory: str | Path) -> int | None:
    """Bytes of an adapter as saved: its weights and adapter_config.json (None when not a local adapter)."""
    p = Path(directory)
    if not is_adapter_dir(p):
        return None
    return sum((p / name).stat().st_size for name in (ADAPTER_CONFIG, *ADAPTER_WEIGHTS) if (p / name).is_file())


def covered_by_saved_modules(key: str, modules_to_save: list[str]) -> bool:
    """Whether weight ``key`` (e.g. ``classifier.weight``) lies in one of ``modules_to_save``, whose trained copies
    the adapter carries (peft matches a module by the end of its dotted name)."""
    module = key.rsplit(".", 1)[0] if "." in key else key
    return any(module == m or module.endswith(f".{m}") or f".{m}." in f".{module}." for m in modules_to_save)


def quantization_kwargs(quantization: str | None) -> dict[str, Any]:
    """``from_pretrained`` arguments for ``model.quantization`` (empty for full precision): NF4 weights with double
    quantization, computing in bf16 where the GPU has it, else fp16, all on the current GPU."""
    if quantization != "4bit":
        return {}
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=compute)
    return {"quantization_config": config, "device_map": {"": torch.cuda.current_device()}}


def attach(model: Any, source: AdapterSource, newly_initialized: list[str],
           revision: str | None = None) -> tuple[Any, list[str]]:
    """The base ``model`` with the saved adapter at ``source`` on it (inference mode), and the weights that are
    still random: those the adapter's saved modules do not cover.

    Raises:
        ModelError: peft cannot load the adapter onto this base.
    """
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, source.path, revision=revision, is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot load the adapter {source.path} onto its base {source.base}: {first_line(exc)}",
                         "the adapter must have been trained on that base (check base_model_name_or_path in "
                         f"its {ADAPTER_CONFIG})") from exc
    peft_model.eval()
    still_random = [k for k in newly_initialized if not covered_by_saved_modules(k, source.modules_to_save)]
    return peft_model, still_random


# peft's task type -> the transformers auto class its base is loaded with
AUTO_CLASSES = {"SEQ_CLS": "AutoModelForSequenceClassification", "CAUSAL_LM": "AutoModelForCausalLM",
                "QUESTION_ANS": "AutoModelForQuestionAnswering", "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
                "TOKEN_CLS": "AutoModelForTokenClassification"}


def adapter_class(source: AdapterSource, fallback: Any) -> tuple[Any, dict[str, Any]]:
    """The class to load an adapter's base with (its recorded class, else by task type, else ``fallback``) and, for
    a classifier, the number of labels its saved head has."""
    import transformers

    name = source.base_class or AUTO_CLASSES.get(source.task_type or "")
    cls = getattr(transformers, name, None) if name else None
    kwargs: dict[str, Any] = {}
    labels = saved_num_labels(source)
    if labels is not None and source.task_type == "SEQ_CLS":
        kwargs = {"num_labels": labels, "ignore_mismatched_sizes": True}
    return cls or fallback, kwargs


def saved_num_labels(source: AdapterSource) -> int | None:
    """Rows of the classifier head a local adapter saved (None when it saved none, or is on the Hub)."""
    path = Path(source.path).expanduser() / ADAPTER_WEIGHTS[0]
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open is no mapping
            if key.endswith(("classifier.weight", "score.weight", "classifier.out_proj.weight")):
                return int(f.get_slice(key).get_shape()[0])
    return None
