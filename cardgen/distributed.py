"""Multi-process launches (torchrun, accelerate): ranks, DDP on CPU, what a sharded launch cannot do, barriers."""

from __future__ import annotations

import os
from pathlib import Path

from cardgen.config import RunConfig
from cardgen.errors import ConfigError


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun/accelerate launch."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


def world_size() -> int:
    """How many processes a torchrun/accelerate launch started (1 for a plain run)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def prepare_distributed() -> None:
    """Make a multi-process launch on a machine without CUDA train with DDP over gloo.

    Under torchrun, TrainingArguments sets up DDP on CPU only when asked to use the CPU (otherwise every process
    trains alone on the whole data); ``ACCELERATE_USE_CPU`` is what ``accelerate launch --cpu`` sets for this.
    """
    if world_size() > 1 and "ACCELERATE_USE_CPU" not in os.environ:
        import torch

        if not torch.cuda.is_available():
            os.environ["ACCELERATE_USE_CPU"] = "true"


def check_distributed(cfg: RunConfig) -> None:
    """Refuse multi-process setups whose evaluation the main process cannot do alone.

    After training, the main process evaluates, compares and saves on its own. With FSDP or DeepSpeed ZeRO-3 the
    parameters are sharded across processes, so its forward pass would wait forever for the others.

    Raises:
        ConfigError: ``training.extra_args`` asks for FSDP or ZeRO stage 3 in a launch of several processes.
    """
    if world_size() <= 1 or cfg.training is None:
        return

    extra = cfg.training.extra_args
    hint = ("use DDP or DeepSpeed ZeRO stage 1/2 with `cardgen run`, or train with FSDP/ZeRO-3 in your own script "
            "with cardgen.CardgenCallback (see docs/multi-gpu.md)")
    if extra.get("fsdp"):
        raise ConfigError("`training.extra_args.fsdp` shards the model across processes; cardgen's evaluation on "
                          "the main process alone cannot run on a sharded model", hint)
    ds = extra.get("deepspeed")
    if isinstance(ds, str) and Path(ds).is_file():
        import json

        try:
            ds = json.loads(Path(ds).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            ds = None
    stage = ds.get("zero_optimization", {}).get("stage") if isinstance(ds, dict) else None
    if stage == 3:
        raise ConfigError("`training.extra_args.deepspeed` uses ZeRO stage 3, which shards the parameters; cardgen's "
                          "evaluation on the main process alone cannot run on a sharded model", hint)


def wait_for_all_processes() -> None:
    """A barrier across the launch's processes, when there is a process group (no-op otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
