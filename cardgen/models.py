"""Loading checkpoints safely: local directories, Hub ids and GGUF files; what transformers newly initialised.

Shared by every task module. Pickle checkpoints are refused unless allowed, remote code is off unless asked for,
and every failure becomes a ModelError that says what to do.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardgen.config import ModelConfig, RunConfig
from cardgen.errors import ModelError, first_line

PICKLE_FILES = ("pytorch_model.bin", "tf_model.h5", "model.ckpt.index", "flax_model.msgpack", "pytorch_model.bin.index.json")
SAFE_FILES = ("model.safetensors", "model.safetensors.index.json")


@dataclass
class LoadedModel:
    """A model, its tokenizer and what loading it revealed."""

    model: Any
    tokenizer: Any
    newly_initialized: list[str]
    load_seconds: float
    source: str
    # The whole model's weights, when training left them sharded across processes (FSDP, ZeRO-3): gathered on the
    # main process after training, for saving (None otherwise: the model saves itself).
    full_state_dict: dict[str, Any] | None = None
    adapter: Any = None  # the AdapterSource when the checkpoint is a saved adapter loaded onto its base
    base_newly_initialized: list[str] = field(default_factory=list)  # fresh in the base under an adapter


def resolve_source(cfg: ModelConfig) -> tuple[str, str | None]:
    """(directory or Hub id, gguf file name) for a model config; a path to a .gguf file is split in two."""
    name = cfg.name_or_path
    gguf = cfg.gguf_file
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file {name} does not exist", "check model.name_or_path")
        return str(path.parent), path.name
    if gguf is None and path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        has_weights = any((path / f).exists() for f in SAFE_FILES + PICKLE_FILES)
        if ggufs and not has_weights:
            gguf = ggufs[0].name
    return name, gguf


def check_local_checkpoint(cfg: ModelConfig, directory: str, gguf: str | None) -> None:
    """Fail early and clearly on local paths that cannot be a usable checkpoint."""
    path = Path(directory).expanduser()
    looks_local = directory.startswith((".", "/", "~")) or path.exists()
    if not looks_local:
        return  # a Hub id: transformers will say what is wrong
    if not path.exists():
        raise ModelError(f"model path {directory} does not exist", "check model.name_or_path")
    if not path.is_dir():
        raise ModelError(f"model path {directory} is not a directory", "give the checkpoint directory")
    from cardgen.adapter_files import is_adapter_dir

    if is_adapter_dir(path):
        return  # an adapter: its base is checked when it is loaded
    if gguf:
        if not (path / gguf).is_file():
            raise ModelError(f"GGUF file {gguf} is not in {directory}", "check model.gguf_file")
        return
    if not (path / "config.json").is_file():
        raise ModelError(f"{directory} is not a model directory (no config.json)",
                         "point model.name_or_path at a directory written by save_pretrained")
    has_safe = any((path / f).exists() for f in SAFE_FILES) or any(path.glob("model-*.safetensors"))
    has_pickle = any((path / f).exists() for f in PICKLE_FILES) or any(path.glob("pytorch_model-*.bin"))
    if not has_safe and has_pickle and not cfg.allow_pickle:
        raise ModelError(
            f"{directory} holds only pickle weights (pytorch_model.bin), which can run arbitrary code when loaded",
            "convert it to safetensors, or pass --allow-pickle (model.allow_pickle: true) if you trust its source",
        )
    if not has_safe and not has_pickle:
        raise ModelError(f"{directory} has no model weights (no model.safetensors)",
                         "point model.name_or_path at a saved checkpoint")


# Any of these makes a local directory a tokenizer; without them transformers 5 quietly builds an empty one
# (only special tokens) from config.json, and every word becomes [UNK].
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "tokenizer.model", "sentencepiece.bpe.model", "merges.txt")


def load_tokenizer(cfg: ModelConfig, directory: str, gguf: str | None) -> Any:
    """The checkpoint's tokenizer, with a pad token (eos when it has none)."""
    from transformers import AutoTokenizer

    path = Path(directory).expanduser()
    if not gguf and path.is_dir() and not any((path / f).is_file() for f in TOKENIZER_FILES):
        from cardgen.adapter_files import find_adapter

        adapter = find_adapter(directory)
        if adapter is not None:  # an adapter saved without its tokenizer uses its base's
            base = base_config(cfg, adapter)
            return load_tokenizer(base, *resolve_source(base))
        raise ModelError(f"{cfg.name_or_path} has no tokenizer files (tokenizer.json, vocab.txt, ...)",
                         "save the tokenizer next to the model (tokenizer.save_pretrained(DIR))")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            directory, revision=cfg.revision, gguf_file=gguf, trust_remote_code=cfg.trust_remote_code
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot load a tokenizer from {cfg.name_or_path}: {first_line(exc)}",
                         "the checkpoint needs its tokenizer files (tokenizer.json or vocab files)") from exc
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
    return tokenizer


def load_pretrained(auto_class: Any, cfg: ModelConfig, tokenizer: Any = None, **kwargs: Any) -> LoadedModel:
    """Load ``auto_class.from_pretrained`` with cardgen's safety rules and collect newly initialised weights.

    Args:
        auto_class: e.g. ``AutoModelForSequenceClassification``.
        cfg: The model section of the config.
        tokenizer: The checkpoint's tokenizer when the caller has loaded it already.
        **kwargs: Passed on (num_labels, id2label, ...).
    """
    import time

    import torch

    from cardgen.adapter_files import find_adapter, quantization_kwargs

    adapter = find_adapter(cfg.name_or_path, cfg.revision)
    if adapter is not None:
        return _load_adapter(auto_class, cfg, adapter, tokenizer, kwargs)
    directory, gguf = resolve_source(cfg)
    check_local_checkpoint(cfg, directory, gguf)
    kwargs.update(quantization_kwargs(cfg.quantization))
    if tokenizer is None:
        tokenizer = load_tokenizer(cfg, directory, gguf)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.dtype, "auto")
    start = time.perf_counter()
    # transformers logs the newly initialised weights as a warning; we take them from loading_info instead.
    log_capture = io.StringIO()
    handler = logging.StreamHandler(log_capture)
    tf_logger = logging.getLogger("transformers")
    tf_logger.addHandler(handler)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            model, info = auto_class.from_pretrained(
                directory,
                revision=cfg.revision,
                gguf_file=gguf,
                trust_remote_code=cfg.trust_remote_code,
                use_safetensors=None if (cfg.allow_pickle or gguf) else True,
                dtype=dtype,
                output_loading_info=True,
                **kwargs,
            )
    except ValueError as exc:
        text = str(exc)
        if "trust_remote_code" in text:
            raise ModelError(f"{cfg.name_or_path} needs its own code to load (trust_remote_code)",
                             "read that code, then set model.trust_remote_code: true") from exc
        if "Unrecognized configuration class" in text or "Unrecognized model" in text:
            raise ModelError(f"{cfg.name_or_path} does not support this task: {first_line(exc)}",
                             "pick a checkpoint whose architecture has a head for this task") from exc
        raise ModelError(f"cannot load {cfg.name_or_path}: {first_line(exc)}", "check model.name_or_path") from exc
    except (OSError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelError(f"cannot load {cfg.name_or_path}: {first_line(exc)}", "check model.name_or_path") from exc
    finally:
        tf_logger.removeHandler(handler)
    seconds = time.perf_counter() - start
    newly = sorted(set(info.get("missing_keys", [])) | {k if isinstance(k, str) else k[0]
                                                        for k in info.get("mismatched_keys", [])})
    if gguf:
        model = plain_model(model)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, newly_initialized=newly, load_seconds=seconds,
                       source=cfg.name_or_path)


def base_config(cfg: ModelConfig, adapter: Any) -> ModelConfig:
    """The model config of an adapter's base: the checkpoint adapter_config.json names, loaded as ``cfg`` says."""
    import dataclasses

    return dataclasses.replace(cfg, name_or_path=adapter.base, revision=adapter.base_revision, gguf_file=None)


def base_error(cfg: ModelConfig, adapter: Any, exc: ModelError) -> ModelError:
    """The one-line error when an adapter's base cannot be loaded: the adapter, the base it names, what to do."""
    from cardgen.adapter_files import ADAPTER_CONFIG, looks_local

    if looks_local(adapter.base):
        hint = (f"its {ADAPTER_CONFIG} names the local path {adapter.base}: put the base there, or point "
                "base_model_name_or_path at a local copy of it")
    else:
        hint = (f"its {ADAPTER_CONFIG} names the Hub id {adapter.base}: without access to the Hub, download it first "
                f"(`hf download {adapter.base}`), or point base_model_name_or_path at a local copy of it")
    return ModelError(f"cannot load the base model of the adapter {cfg.name_or_path}: {exc.message}", hint)


def _load_adapter(auto_class: Any, cfg: ModelConfig, adapter: Any, tokenizer: Any,
                  kwargs: dict[str, Any]) -> LoadedModel:
    """A saved adapter: its base loaded as ``auto_class`` (with cardgen's rules), then the adapter put on it.

    Raises:
        ModelError: The base cannot be loaded (missing locally, or a Hub id with the Hub out of reach), naming the
            adapter and its base; or the adapter does not fit the base.
    """
    import time

    from cardgen.adapter_files import attach

    start = time.perf_counter()
    if tokenizer is None:
        tokenizer = load_tokenizer(cfg, *resolve_source(cfg))
    try:
        base = load_pretrained(auto_class, base_config(cfg, adapter), tokenizer=tokenizer, **kwargs)
    except ModelError as exc:
        raise base_error(cfg, adapter, exc) from exc
    model, still_random = attach(base.model, adapter, base.newly_initialized, cfg.revision)
    return LoadedModel(model=model, tokenizer=tokenizer, newly_initialized=still_random,
                       load_seconds=time.perf_counter() - start, source=cfg.name_or_path, adapter=adapter,
                       base_newly_initialized=base.newly_initialized)


def plain_model(model: Any) -> Any:
    """An ordinary transformers model with the weights of a GGUF-loaded one (dequantised, float).

    transformers marks a model loaded from a GGUF file as quantized with a GGUF quantizer that is neither trainable
    nor serializable, although its weights were dequantised on load. Building the same class from the config
    (without the quantization entry) and loading the state dict gives a model that the Trainer trains and
    ``save_pretrained`` writes as safetensors, with identical outputs.
    """
    import copy

    import torch

    if getattr(model, "hf_quantizer", None) is None:
        return model
    state = model.state_dict()
    packed = [k for k, v in state.items() if not torch.is_floating_point(v) and "inv_freq" not in k]
    if packed:
        raise ModelError(f"the GGUF weights stayed packed ({packed[0]}, ...), so they cannot be fine-tuned or saved",
                         "load the GGUF file dequantised (without the `kernels` package), or use a safetensors copy")
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        from transformers.modeling_utils import no_init_weights  # type: ignore[attr-defined,no-redef]
    with no_init_weights():  # every weight is overwritten below: skip the random initialisation
        plain = type(model)(config)
    plain.load_state_dict(state, strict=True)
    plain.tie_weights()
    if getattr(model, "generation_config", None) is not None:
        plain.generation_config = copy.deepcopy(model.generation_config)
    plain.to(next(model.parameters()).device)
    plain.train(model.training)
    return plain


@contextlib.contextmanager
def hf_quiet() -> Any:
    """Silence transformers' load reports, warnings and progress bars for the duration; cardgen reports itself."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def num_parameters(model: Any) -> int:
    """Number of parameters of a torch module (tied and shared ones once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def weights_size_on_disk(path: str | Path, patterns: tuple[str, ...] = ("*.safetensors", "*.bin", "*.gguf")) -> int | None:
    """Bytes of the weight files in a local checkpoint directory (None for a Hub id)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return None
    return sum(f.stat().st_size for pattern in patterns for f in path.glob(pattern))


def pick_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"



def size_on_disk(path: str | os.PathLike[str]) -> int:
    """Bytes of a checkpoint: a file's size, or the sum of the files directly inside a directory.

    Sub-directories (a Trainer's ``checkpoint-*`` folders, ``runs/``) are not counted; symbolic links (the Hub cache)
    are followed.

    Raises:
        ModelError: The path does not exist.
    """
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if not p.is_dir():
        raise ModelError(
            f"checkpoint `{p}` does not exist", hint="pass the directory the model was loaded from"
        )
    return sum(f.stat().st_size for f in p.iterdir() if f.is_file())


def auto_config(cfg: RunConfig) -> Any:
    """The checkpoint's config (label names, architecture); an adapter's is its base's."""
    from cardgen.adapter_files import find_adapter

    adapter = find_adapter(cfg.model.name_or_path, cfg.model.revision)
    if adapter is None:
        return _auto_config(cfg.model)
    try:
        return _auto_config(base_config(cfg.model, adapter))
    except ModelError as exc:
        raise base_error(cfg.model, adapter, exc) from exc


def _auto_config(model_cfg: ModelConfig) -> Any:
    from transformers import AutoConfig

    directory, gguf = resolve_source(model_cfg)
    check_local_checkpoint(model_cfg, directory, gguf)
    try:
        return AutoConfig.from_pretrained(directory, revision=model_cfg.revision, gguf_file=gguf,
                                          trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        first = first_line(exc)
        if "trust_remote_code" in str(exc):
            raise ModelError(f"{model_cfg.name_or_path} needs its own code to load (trust_remote_code)",
                             "read that code, then set model.trust_remote_code: true") from exc
        raise ModelError(f"cannot read the model config of {model_cfg.name_or_path}: {first}",
                         "check model.name_or_path (a directory with config.json, or a Hub id)") from exc


def hub_commit(name_or_path: str, revision: str | None = None, gguf_file: str | None = None) -> str | None:
    """The Hub commit a model given by Hub id was loaded at, read from huggingface_hub's cache (no request);
    None for a local path, or when the cache does not tell."""
    import re

    if not name_or_path or Path(name_or_path).expanduser().exists():
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in (*([gguf_file] if gguf_file else []), "config.json"):
        try:
            path = try_to_load_from_cache(name_or_path, filename, revision=revision)
        except ValueError:  # not a valid repo id
            return None
        found = re.search(r"[/\\]snapshots[/\\]([0-9a-f]{40})[/\\]", path) if isinstance(path, str) else None
        if found:
            return found.group(1)
    return None
