"""The plan of a run, for `cardgen check` and `cardgen run --dry-run`: split sizes, label balance, steps, the
stages that would run, where the card would go, and the training time extrapolated from a few timed steps.

``pipeline.check`` loads and checks everything the way a run does (the same functions, in the same order) and
hands the loaded model and data here. Nothing is written: the timed steps update only the model in memory, which
is thrown away.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

from cardgen.config import RunConfig
from cardgen.console import Progress
from cardgen.record import RunPlan, SplitPlan, TimeEstimate

TIMED_STEPS = 3  # optimizer steps timed (after one untimed warm-up step)


def stages(cfg: RunConfig, task: Any, push_to: str | None) -> list[str]:
    """The stages a run of ``cfg`` goes through, in order (names as in run.json's stage_seconds)."""
    names = ["load", "data"]
    trains = cfg.training is not None
    if trains and cfg.compare.enabled and hasattr(task, "evaluate_base"):
        names.append("evaluate_base")
    if trains:
        names.append("train")
    names.append("evaluate")
    if cfg.compare.enabled:
        names.append("compare")
    if cfg.benchmark.enabled:
        names.append("benchmark")
    names.append("write")
    if push_to:
        names.append("push")
    return names


def steps_per_epoch(num_examples: int, cfg: RunConfig, world: int = 1) -> int:
    """Optimizer steps per epoch, counted as the Trainer counts them (the last, partial batch included)."""
    assert cfg.training is not None
    batches = math.ceil(num_examples / (cfg.training.train_batch_size * max(1, world)))
    accumulate = cfg.training.gradient_accumulation_steps
    return max(batches // accumulate + int(batches % accumulate > 0), 1)


def build_plan(cfg: RunConfig, task: Any, inputs: Any, *, config_label: str, push_to: str | None,
               warnings: list[str], progress: Progress, estimate: bool = True) -> RunPlan:
    """The plan of a run from what ``pipeline.check`` loaded (``inputs``: data, model, tokenizer)."""
    from cardgen.distributed import world_size
    from cardgen.models import num_parameters

    data, loaded = inputs.data, inputs.loaded
    splits = [SplitPlan(name=s.name, num_examples=s.num_examples, source=s.source,
                        label_distribution=dict(s.label_distribution), num_truncated=s.num_truncated)
              for s in data.record.splits.values()]
    out_dir = Path(cfg.output.dir)
    plan = RunPlan(config=config_label, task=cfg.task, model=cfg.model.name_or_path,
                   architecture=type(loaded.model).__name__, num_parameters=num_parameters(loaded.model),
                   label_names=list(data.label_names), splits=splits, max_length=data.record.max_length,
                   stages=stages(cfg, task, push_to), output_dir=str(out_dir), card=str(out_dir / "README.md"),
                   push_to=push_to, inferred=list(cfg.card.inferred), warnings=list(warnings))
    t = cfg.training
    if t is None:
        return plan
    from cardgen.train import task_training_arguments

    task_training_arguments(cfg, task, out_dir)  # the training section and extra_args, as transformers takes them
    plan.trackers = list(t.report_to)
    train_ds = task.train_dataset(data.frames["train"], loaded.tokenizer, cfg, "train")
    world = world_size()
    per_epoch = steps_per_epoch(len(train_ds), cfg, world)
    plan.steps_per_epoch = per_epoch
    plan.total_steps = t.max_steps if t.max_steps > 0 else math.ceil(t.num_epochs * per_epoch)
    plan.num_epochs = t.num_epochs if t.max_steps <= 0 else round(plan.total_steps / per_epoch, 2)
    plan.total_train_batch_size = t.train_batch_size * world * t.gradient_accumulation_steps
    if estimate:
        progress.stage(f"Timing {TIMED_STEPS} training steps")
        eval_ds = task.train_dataset(data.frames["validation"], loaded.tokenizer, cfg, "validation") \
            if "validation" in data.frames else None
        plan.estimate = time_steps(cfg, task, loaded, train_ds, eval_ds, plan.total_steps)
    return plan


def _model_inputs(model: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with only the columns the model's forward takes (and the labels), as the Trainer keeps them."""
    import inspect

    keep = set(inspect.signature(model.forward).parameters) | {"labels", "label", "label_ids"}
    return [{k: v for k, v in row.items() if k in keep} for row in rows]


def _timed_batches(train_ds: Any, size: int, steps: int, seed: int) -> list[list[int]]:
    """Row indices of one warm-up batch and ``steps`` timed batches. The Trainer groups batches by length, so the
    timed batches are runs of similar length taken at evenly spaced points of the length order (their mean cost
    is the mean cost of an epoch's batches); the warm-up batch is the median one."""
    n = len(train_ds)
    columns = getattr(train_ds, "column_names", None) or []
    lengths = [len(ids) for ids in train_ds["input_ids"]] if "input_ids" in columns else [0] * n
    order = sorted(range(n), key=lambda i: (lengths[i], i))
    rng = random.Random(seed)

    def around(fraction: float) -> list[int]:
        start = min(max(0, round(fraction * n) - size // 2), max(0, n - size))
        rows = order[start:start + size]
        rng.shuffle(rows)
        return rows

    return [around(0.5)] + [around((k + 0.5) / steps) for k in range(steps)]


def time_steps(cfg: RunConfig, task: Any, loaded: Any, train_ds: Any, eval_ds: Any,
               total_steps: int) -> TimeEstimate:
    """Seconds per optimizer step over :data:`TIMED_STEPS` steps of the run's own model, data, batch size and
    optimizer (after one warm-up step), and the seconds of one validation pass, from the forward passes' time per
    example."""
    import torch

    from cardgen.models import pick_device

    t = cfg.training
    assert t is not None
    device = pick_device()
    model = loaded.model.to(device)
    model.train()
    collate = task.collator(loaded.tokenizer, cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    size = min(t.train_batch_size, len(train_ds))

    def batch(rows: list[int]) -> dict[str, Any]:
        features = _model_inputs(model, [train_ds[i] for i in rows])
        return {k: v.to(device) if hasattr(v, "to") else v for k, v in collate(features).items()}

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    seconds, forward, examples = [], 0.0, 0
    for step, rows in enumerate(_timed_batches(train_ds, size, TIMED_STEPS, t.seed)):
        start = time.perf_counter()
        for _ in range(t.gradient_accumulation_steps):
            inputs = batch(rows)
            begin = time.perf_counter()
            loss = model(**inputs).loss
            sync()
            if step:
                forward, examples = forward + time.perf_counter() - begin, examples + len(rows)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if step:  # the first step warms up (allocations, kernels, the optimizer's state)
            seconds.append(time.perf_counter() - start)
    per_step = sum(seconds) / len(seconds)
    eval_seconds = round(forward / examples * len(eval_ds), 2) if eval_ds is not None and examples else None
    return TimeEstimate(seconds_per_step=round(per_step, 4), timed_steps=len(seconds),
                        train_seconds=round(per_step * total_steps, 1), eval_seconds_per_epoch=eval_seconds,
                        device=device)
