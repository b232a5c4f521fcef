"""Multi-process launches (torchrun, accelerate): ranks, DDP on CPU, what sharded training needs, barriers."""

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


def check_distributed(cfg: RunConfig) -> list[str]:
    """Check what a multi-process launch asks of the Trainer before anything runs; warnings for the run record.

    FSDP and DeepSpeed ZeRO-3 shard the weights across the processes: every process takes part in cardgen's
    evaluation (sharding.py), and the main process saves the whole model gathered after training. That needs
    ZeRO-3's ``stage3_gather_16bit_weights_on_model_save``. Without CUDA, accelerate trains with DDP whatever
    ``fsdp`` says: a warning.

    Raises:
        ConfigError: ZeRO stage 3 without ``stage3_gather_16bit_weights_on_model_save: true``.
    """
    if world_size() <= 1 or cfg.training is None:
        return []
    extra = cfg.training.extra_args
    warnings = []
    if extra.get("fsdp"):
        import torch

        if not torch.cuda.is_available():
            warnings.append("`training.extra_args.fsdp` has no effect without CUDA: accelerate trains CPU processes "
                            "with DDP (every process holds the whole model)")
    ds = extra.get("deepspeed")
    if isinstance(ds, str) and Path(ds).is_file():
        import json

        try:
            ds = json.loads(Path(ds).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            ds = None
    zero = ds.get("zero_optimization", {}) if isinstance(ds, dict) else {}
    if isinstance(zero, dict) and zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save"):
        raise ConfigError("`training.extra_args.deepspeed` uses ZeRO stage 3 without "
                          "`stage3_gather_16bit_weights_on_model_save`; the fine-tuned model could not be saved whole",
                          "add \"stage3_gather_16bit_weights_on_model_save\": true to zero_optimization")
    return warnings


def wait_for_all_processes() -> None:
    """A barrier across the launch's processes, when there is a process group (no-op otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
