"""Evaluation throughput: cardgen's evaluation vs transformers.pipeline, and cardgen's padding efficiency.

Model: the packaged all-MiniLM-L6-v2 with a sequence-classification head (seeded), data: the VADER test split,
truncated to 64 tokens as in examples/sentiment.yaml. "cardgen" is ``cardgen.tasks.classification.evaluate`` (what
``cardgen run`` calls: tokenise, the length-sorted engine with evaluation.batch_size 32, metrics); the peers are
``pipeline("text-classification")`` at batch size 32 and at batch size 1 (what ``evaluate.evaluator`` runs), same
model object, same truncation. Texts to predictions, all in the same process, interleaved in alternating order.
Predictions must be identical. Padding efficiency = real tokens / processed tokens over the whole test split. The
batch-32 row's target is 0.95 of its padding-only bound: the pipeline's processed tokens (each batch of 32 padded to
its longest) over the real tokens, the most that dropping padding alone could give at equal speed per token.

    python benchmarks/bench_eval.py [--examples N] [--rounds R] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Row,
    emit,
    eval_config,
    interleaved,
    load_average,
    log,
    parser,
    quiet,
    require_data,
    timed_row,
)

TARGET_OF_BOUND = 0.95  # of the padding-only bound at batch 32 (the pipeline's processed tokens / real tokens)
TARGET_BATCH_1 = 2.5
TARGET_PADDING = 0.9


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=300, help="test examples per timed pass (default 300)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    args = p.parse_args()
    if args.quick:
        args.examples, args.rounds = 64, 1
    quiet()
    require_data()
    import torch
    from transformers import pipeline

    from cardgen.engine import CALL_TOKENS, length_order, min_cost_batches
    from cardgen.models import load_tokenizer, resolve_source
    from cardgen.tasks import classification as task

    cfg = eval_config()
    directory, gguf = resolve_source(cfg.model)
    tokenizer = load_tokenizer(cfg.model, directory, gguf)
    data = task.prepare_data(cfg, tokenizer, False, None)
    torch.manual_seed(0)
    loaded = task.load_model(cfg, data.label_names, tokenizer=tokenizer)
    model = loaded.model.eval()
    labels = data.label_names
    full = data.frames["test"]
    frame = full.iloc[: args.examples].reset_index(drop=True)
    warm = full.iloc[:32].reset_index(drop=True)
    max_length = task.effective_max_length(cfg, tokenizer)
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=model.device)
    label_ids = {name: i for i, name in model.config.id2label.items()}

    def ours(f=frame):  # noqa: ANN001, ANN202
        return task.evaluate(loaded, f, cfg, labels, "model", "test").predictions

    def peer(batch_size: int, f=frame):  # noqa: ANN001, ANN202
        out = pipe(f["text"].tolist(), batch_size=batch_size, truncation=True, max_length=max_length)
        return [label_ids[o["label"]] for o in out]

    predictions: dict[str, list[int]] = {}
    calls = {
        "pipeline batch 32": lambda: predictions.__setitem__("p32", peer(32)),
        "cardgen": lambda: predictions.__setitem__("ours", ours()),
        "pipeline batch 1": lambda: predictions.__setitem__("p1", peer(1)),
    }
    for call in (lambda: ours(warm), lambda: peer(32, warm), lambda: peer(1, warm)):
        call()  # warm-up on 32 examples: first-call costs out of the timed rounds
    log(f"timing {len(frame)} examples, {args.rounds} rounds")
    times = interleaved(calls, args.rounds, warmup=False,
                        on_round=lambda r, t: log(f"round {r}: " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items())))
    same32 = predictions["ours"] == predictions["p32"]
    same1 = predictions["ours"] == predictions["p1"]
    # Work done: tokens the model processed (padding included) by each, from the lengths alone.
    lengths = [len(x) for x in tokenizer(frame["text"].tolist(), truncation=True, max_length=max_length)["input_ids"]]
    order = length_order(lengths)
    packed = min_cost_batches(order, lengths, 32 * lengths[order[0]], CALL_TOKENS)  # the engine's plan on a CPU
    processed = {name: sum(len(b) * max(lengths[i] for i in b) for b in batches) for name, batches in (
        ("pipeline batch 32", [list(range(i, min(i + 32, len(lengths)))) for i in range(0, len(lengths), 32)]),
        ("pipeline batch 1", [[i] for i in range(len(lengths))]), ("cardgen", packed))}
    detail = (f"{len(frame)} VADER test texts, max length {max_length}, MiniLM-L6 classifier; tokens processed "
              f"(padding included): cardgen {processed['cardgen']}, pipeline batch 32 "
              f"{processed['pipeline batch 32']}, batch 1 {processed['pipeline batch 1']}")
    # With no padding at all and the same speed per token, cardgen could not beat the pipeline by more than its
    # processed / real tokens: the padding-only bound. The row's target is a share of it.
    bound = processed["pipeline batch 32"] / sum(lengths)
    row32 = timed_row("eval throughput vs pipeline, batch 32", times["pipeline batch 32"], times["cardgen"],
                      TARGET_OF_BOUND * bound, f"identical predictions: {'yes' if same32 else 'NO'}", same32,
                      f"{detail}; padding-only bound {bound:.2f}x")
    assert row32.ratio is not None
    row32.target = f">= {TARGET_OF_BOUND:g} x bound {bound:.2f}x = {TARGET_OF_BOUND * bound:.2f}x"
    row32.check += f"; ratio / bound {row32.ratio / bound:.2f}"
    rows = [
        row32,
        timed_row("eval throughput vs pipeline, batch 1", times["pipeline batch 1"], times["cardgen"],
                  TARGET_BATCH_1, f"identical predictions: {'yes' if same1 else 'NO'}", same1, detail),
    ]
    log(f"padding efficiency over all {len(full)} test examples")
    record = task.evaluate(loaded, full, cfg, labels, "model", "test")
    efficiency = float(record.extra["padding_efficiency"])
    rows.append(Row(name="padding efficiency in evaluation", ours=efficiency, peer=None, ratio=None,
                    target=f">= {TARGET_PADDING:g}", ok=efficiency >= TARGET_PADDING,
                    check="real tokens / processed tokens",
                    detail=f"all {len(full)} test examples, evaluation.batch_size 32, length-sorted and packed",
                    load=load_average()))
    emit(rows, args.json)


if __name__ == "__main__":
    main()
