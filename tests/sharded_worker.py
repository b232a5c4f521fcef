"""Every task's evaluation, its base evaluation and the base comparison, inside ``sharded_evaluation``.

Run alone (one process) or under ``torchrun --nproc_per_node N`` (each process evaluates its share, the outputs are
gathered on all). Each process writes ``OUT.RANK.json``: the records without wall-clock times, for the test to
compare with the one-process run; the main process saves each model with cardgen's writer into
``OUT.models/TASK``. ``--fsdp`` first shards each model's weights across the processes with torch's FSDP2
(``fully_shard``), so every forward pass needs every process, and the saved weights are gathered from the shards.

Usage: python tests/sharded_worker.py SPEC.json OUT [--fsdp]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

TIMES = {"runtime_s", "seconds"}


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def fully_shard_model(model: Any) -> None:
    """FSDP2 over the model's repeated blocks (``_no_split_modules``) and the root, as accelerate wraps it."""
    from torch.distributed.fsdp import fully_shard

    blocks = set(getattr(model, "_no_split_modules", None) or [])
    tied = model.get_input_embeddings()  # tied to the output head (MLM, GPT-2): both stay in the root's group
    for module in list(model.modules()):
        if type(module).__name__ in blocks and tied not in list(module.modules()):
            fully_shard(module)
    fully_shard(model)


def save_whole(loaded: Any, directory: Path, fsdp: bool) -> None:
    """The main process saves the model through cardgen's writer; sharded weights gathered first, with the options
    accelerate's ``get_state_dict`` uses for FSDP2 (a collective: every process takes part)."""
    import torch.distributed as dist

    from cardgen.outputs import save_pretrained

    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, cpu_offload=True)
        loaded.full_state_dict = get_model_state_dict(loaded.model, options=options)
    if not dist.is_initialized() or dist.get_rank() == 0:
        directory.mkdir(parents=True)
        save_pretrained(loaded, directory)


def evaluate_task(cfg_dict: dict[str, Any], fsdp: bool, save_to: Path) -> dict[str, Any]:
    from transformers import set_seed

    from cardgen.compare.stage import compare_stage
    from cardgen.config import load_config
    from cardgen.console import NullProgress
    from cardgen.models import auto_config, load_tokenizer, resolve_source
    from cardgen.record import to_dict
    from cardgen.sharding import has_sharded_parameters
    from cardgen.tasks import get_task

    cfg = load_config(data=cfg_dict)
    task = get_task(cfg.task)
    tokenizer = load_tokenizer(cfg.model, *resolve_source(cfg.model))
    data = task.prepare_data(cfg, tokenizer, True, auto_config(cfg))
    set_seed(42)  # the pipeline's seed before loading: a new head starts the same in every process
    loaded = task.load_model(cfg, data.label_names, tokenizer=tokenizer)
    loaded.model.eval()
    if fsdp:
        fully_shard_model(loaded.model)
        assert has_sharded_parameters(loaded.model)
    frame = data.frames["test"]
    base = None
    if hasattr(task, "evaluate_base"):
        base = task.evaluate_base(loaded, frame, cfg, data.label_names, "test", NullProgress())
    ev = task.evaluate(loaded, frame, cfg, data.label_names, "fine-tuned", "test", NullProgress())
    base, comparison = compare_stage(cfg, task, loaded, data, training=SimpleNamespace(), evaluation=ev,
                                     model=SimpleNamespace(newly_initialized=loaded.newly_initialized),
                                     base_evaluation=base, progress=NullProgress())
    save_whole(loaded, save_to, fsdp)
    return _without_times({"evaluation": to_dict(ev), "base": to_dict(base) if base else None,
                           "comparison": to_dict(comparison) if comparison else None})


def main(argv: list[str]) -> None:
    from cardgen.sharding import sharded_evaluation

    spec = json.loads(Path(argv[0]).read_text())
    fsdp = "--fsdp" in argv
    results: dict[str, Any] = {}
    with sharded_evaluation() as shard:
        if fsdp:
            assert shard is not None, "--fsdp needs a launch of several processes"
        for name, cfg_dict in spec.items():
            results[name] = evaluate_task(cfg_dict, fsdp, Path(f"{argv[1]}.models") / name)
    rank = os.environ.get("RANK", "0")
    Path(f"{argv[1]}.{rank}.json").write_text(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
