"""Training tokens/s: ``cardgen run`` vs a plain transformers Trainer with DataCollatorWithPadding and the same
arguments; and cardgen's own overhead (final evaluation, run record, card) as a share of training time.

Model: the packaged all-MiniLM-L6-v2 (classification head), data: the first VADER train/validation/test sentences
(max length 64) in the proportions of examples/sentiment.yaml (test examples = 1/6 of the training examples seen:
2,000 test vs 6,000 x 2 epochs there). Hyperparameters of examples/sentiment.yaml (learning rate 5e-5, batch 32,
warm-up 0.1, weight decay 0.01, per-epoch evaluation and checkpoints, best model at the end). The peer gets the
same TrainingArguments values except what cardgen chooses itself (``train_sampling_strategy``, pin memory);
everything else is transformers' default. Tokens/s = real (non-padding) training tokens x epochs / the Trainer's
``train_runtime`` (per-epoch validation included for both). Rounds alternate the order and the seed (42, 43, ...),
so the seed-to-seed spread of the final validation losses (at least 1% of the loss) is the noise the two are
compared against.

    python benchmarks/bench_training.py [--train N] [--epochs E] [--rounds R] [--json]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DATA,
    MINILM,
    ROOT,
    Row,
    emit,
    load_average,
    log,
    parser,
    quiet,
    read_jsonl,
    require_data,
    timed_row,
)

TARGET_SPEED = 1.2
TARGET_OVERHEAD = 0.05


def write_subset(root: Path, n_train: int, epochs: float) -> dict[str, int]:
    """VADER subsets in the example's proportions; returns split sizes."""
    sizes = {"train": n_train, "validation": max(32, n_train // 10), "test": max(32, round(n_train * epochs / 6))}
    for split, n in sizes.items():
        rows = read_jsonl(DATA / f"{split}.jsonl", n)
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        sizes[split] = len(rows)
    return sizes


def cardgen_config(data: Path, out: Path, epochs: float, seed: int) -> Any:
    from cardgen.config import load_config

    return load_config(ROOT / "examples" / "sentiment.yaml", [
        f"model.name_or_path={MINILM}", f"data.train={data / 'train.jsonl'}",
        f"data.validation={data / 'validation.jsonl'}", f"data.test={data / 'test.jsonl'}",
        f"training.num_epochs={epochs}", f"training.seed={seed}", "compare.enabled=false", "compare.require=[]",
        "benchmark.enabled=false", f"output.dir={out}",
    ])


def run_cardgen(data: Path, work: Path, epochs: float, seed: int) -> dict[str, Any]:
    """``cardgen run`` end to end; the overhead parts timed from the record it wrote."""
    from cardgen.card.plots import write_plots
    from cardgen.card.render import write_card
    from cardgen.pipeline import run
    from cardgen.record import save_record

    out = work / f"cardgen-{seed}"
    start = time.perf_counter()
    result = run(cardgen_config(data, out, epochs, seed))
    wall = time.perf_counter() - start
    record = result.record
    assert record.training is not None and record.evaluation is not None
    # The record, plots and card are pure functions of the record: time each again on the finished run.
    t0 = time.perf_counter()
    save_record(record, out / "run-again.json")
    t1 = time.perf_counter()
    write_plots(record, out / "plots-again")
    t2 = time.perf_counter()
    write_card(record, out / "README-again.md")
    t3 = time.perf_counter()
    last = record.training.epochs[-1]
    return {
        "train_s": float(record.training.train_runtime_s or 0.0), "wall_s": wall,
        "train_loss": record.training.train_loss, "eval_loss": last.validation_loss,
        "eval_accuracy": last.metrics.get("accuracy"),
        "evaluate_s": float(record.stage_seconds.get("evaluate", 0.0)), "record_s": t1 - t0, "plots_s": t2 - t1,
        "card_s": t3 - t2, "data_s": float(record.stage_seconds.get("data", 0.0)),
        "padding_efficiency": record.evaluation.extra.get("padding_efficiency"),
    }


def run_plain_trainer(data: Path, work: Path, epochs: float, seed: int) -> dict[str, Any]:
    """The peer: AutoModelForSequenceClassification + Trainer + DataCollatorWithPadding, the same arguments."""
    import datasets
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from cardgen.files import package_path
    from cardgen.train import training_arguments

    cfg = cardgen_config(data, work / "unused", epochs, seed)
    ours = training_arguments(cfg, work / f"unused-{seed}", "accuracy", True)  # cardgen's values, to copy
    same = ["learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
            "per_device_eval_batch_size", "seed", "data_seed", "weight_decay", "warmup_steps", "lr_scheduler_type",
            "optim", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "gradient_accumulation_steps",
            "fp16", "bf16", "eval_strategy", "save_strategy", "logging_strategy", "load_best_model_at_end",
            "metric_for_best_model", "greater_is_better", "save_total_limit", "disable_tqdm"]
    kwargs = {k: getattr(ours, k) for k in same}
    args = TrainingArguments(output_dir=str(work / f"plain-{seed}"), report_to="none", **kwargs)
    path = package_path(MINILM)
    tokenizer = AutoTokenizer.from_pretrained(path)
    labels = ["negative", "positive"]

    def dataset(split: str) -> Any:
        rows = read_jsonl(data / f"{split}.jsonl")
        enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=64)
        return datasets.Dataset.from_dict({**enc, "labels": [labels.index(r["label"]) for r in rows]})

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    trainer = Trainer(model=model, args=args, train_dataset=dataset("train"), eval_dataset=dataset("validation"),
                      processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=accuracy)
    output = trainer.train()
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    return {"train_s": float(output.metrics["train_runtime"]), "train_loss": float(output.training_loss),
            "eval_loss": float(evals[-1]["eval_loss"]), "eval_accuracy": float(evals[-1]["eval_accuracy"])}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=960, help="training examples (default 960)")
    p.add_argument("--epochs", type=float, default=1.0, help="epochs (default 1)")
    p.add_argument("--rounds", type=int, default=4, help="rounds, each one run of both (default 4)")
    args = p.parse_args()
    if args.quick:
        args.train, args.rounds = 256, 1
    quiet()
    require_data()
    from transformers import AutoTokenizer

    from cardgen.files import package_path
    from cardgen.models import hf_quiet

    with tempfile.TemporaryDirectory(prefix="cardgen-bench-train-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        sizes = write_subset(data, args.train, args.epochs)
        tokenizer = AutoTokenizer.from_pretrained(package_path(MINILM))
        train_texts = [r["text"] for r in read_jsonl(data / "train.jsonl")]
        tokens = sum(len(x) for x in tokenizer(train_texts, truncation=True, max_length=64)["input_ids"])
        tokens = int(tokens * args.epochs)
        ours: list[dict[str, Any]] = []
        peer: list[dict[str, Any]] = []
        for r in range(args.rounds):
            seed = 42 + r
            order = [("plain Trainer", run_plain_trainer, peer), ("cardgen", run_cardgen, ours)]
            for name, fn, results in order if r % 2 == 0 else order[::-1]:
                log(f"round {r}: {name}, seed {seed}, {sizes['train']} examples x {args.epochs:g} epochs")
                with hf_quiet():
                    results.append(fn(data, work, args.epochs, seed))
                log(f"round {r}: {name} trained in {results[-1]['train_s']:.1f} s, "
                    f"train loss {results[-1]['train_loss']:.4f}, eval loss {results[-1]['eval_loss']:.4f}")
    peer_s = [x["train_s"] for x in peer]
    ours_s = [x["train_s"] for x in ours]
    rows = [_speed_row(peer, ours, peer_s, ours_s, tokens, sizes, args)]
    rows.append(_overhead_row(ours, sizes))
    emit(rows, args.json)


def _speed_row(peer: list[dict[str, Any]], ours: list[dict[str, Any]], peer_s: list[float], ours_s: list[float],
               tokens: int, sizes: dict[str, int], args: Any) -> Row:
    def mean(results: list[dict[str, Any]], key: str) -> float:
        return statistics.mean(x[key] for x in results)

    def spread(results: list[dict[str, Any]], key: str) -> float:
        values = [x[key] for x in results]
        return max(values) - min(values)

    delta = abs(mean(ours, "eval_loss") - mean(peer, "eval_loss"))
    # Noise: the seed-to-seed spread of either method's final validation loss, and never less than 1% of the loss
    # (two seeds are a crude estimate of the spread).
    noise = max(spread(ours, "eval_loss"), spread(peer, "eval_loss"), 0.01 * mean(peer, "eval_loss"))
    same_loss = delta <= noise
    check = (f"final eval loss {mean(ours, 'eval_loss'):.4f} vs {mean(peer, 'eval_loss'):.4f} (diff {delta:.4f}, "
             f"noise {noise:.4f}); accuracy {mean(ours, 'eval_accuracy'):.3f} vs "
             f"{mean(peer, 'eval_accuracy'):.3f}; train loss {mean(ours, 'train_loss'):.4f} vs "
             f"{mean(peer, 'train_loss'):.4f}")
    detail = (f"{sizes['train']} VADER train examples x {args.epochs:g} epochs, {tokens} real tokens, batch 32, "
              f"MiniLM-L6; tokens/s cardgen {tokens / statistics.median(ours_s):.0f} vs "
              f"peer {tokens / statistics.median(peer_s):.0f}")
    return timed_row("training tokens/s vs plain Trainer", peer_s, ours_s, TARGET_SPEED, check, same_loss, detail)


def _overhead_row(ours: list[dict[str, Any]], sizes: dict[str, int]) -> Row:
    parts = {k: statistics.median(x[k] for x in ours) for k in ("evaluate_s", "record_s", "plots_s", "card_s")}
    overhead = sum(parts.values())
    train = statistics.median(x["train_s"] for x in ours)
    share = overhead / train
    return Row(name="cardgen overhead / training time", ours=share, peer=None, ratio=None,
               target=f"<= {TARGET_OVERHEAD:.0%}", ok=share <= TARGET_OVERHEAD,
               check=", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in parts.items())
               + f" of {train:.1f} s training",
               detail=f"final evaluation of {sizes['test']} test examples, run.json, plots, card; data preparation "
                      f"{statistics.median(x['data_s'] for x in ours):.2f} s not counted",
               load=load_average())


if __name__ == "__main__":
    main()
