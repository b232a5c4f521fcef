"""Where cardgen's evaluation time goes against ``pipeline`` at batch 32: the forward cost of a batch as a function
of its rows and width, the processed tokens and calls of each batching, and cardgen's time outside the forward.

A diagnostic, not a row of ``make bench``: it is how the eval row's analysis in RESULTS.md was measured.

    python benchmarks/probe_eval.py [--examples N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import eval_config, load_average, log, quiet  # noqa: E402


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calls", default="0,16,32,64,128", help="call costs (tokens) of the planned policies")
    p.add_argument("--no-grid", action="store_true", help="skip the t(rows, width) grid")
    args = p.parse_args()
    quiet()
    import numpy as np
    import torch
    from transformers import pipeline

    from cardgen import engine
    from cardgen.models import load_tokenizer, resolve_source
    from cardgen.tasks import classification as task

    cfg = eval_config()
    tokenizer = load_tokenizer(cfg.model, *resolve_source(cfg.model))
    data = task.prepare_data(cfg, tokenizer, False, None)
    torch.manual_seed(0)
    loaded = task.load_model(cfg, data.label_names, tokenizer=tokenizer)
    model = loaded.model.eval()
    frame = data.frames["test"].iloc[: args.examples].reset_index(drop=True)

    def best(fn, repeats: int = args.repeats) -> float:  # noqa: ANN001
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    grid = {}
    log(f"forward cost t(rows, width), best of {args.repeats}, SDPA, inference mode")
    with torch.inference_mode(), engine.sdpa_attention(model):
        for width in () if args.no_grid else (8, 16, 32, 64):
            for rows in (1, 4, 16, 32, 64, 128):
                ids = torch.full((rows, width), 1000, dtype=torch.long)
                batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
                model(**batch)
                grid[rows, width] = best(lambda b=batch: model(**b))
                print(f"t({rows:3d}, {width:2d}) = {grid[rows, width] * 1e3:7.1f} ms  "
                      f"{grid[rows, width] / (rows * width) * 1e6:6.1f} us/token", flush=True)
    if grid:
        a, b = np.polyfit([r * w for r, w in grid], list(grid.values()), 1)[::-1]
        print(f"least squares t = {a * 1e3:.2f} ms + {b * 1e6:.1f} us x tokens  (a call costs {a / b:.0f} tokens)")

    log("cardgen's evaluation, split into its parts, under each batching policy, interleaved with the pipeline")
    features = task.encode(frame, tokenizer, cfg)
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=model.device)
    max_length = task.effective_max_length(cfg, tokenizer)
    planner = engine._plan

    def greedy(order, lengths, start, budget):  # noqa: ANN001, ANN202 - the policy before the plan
        batches = [list(order[:32])] + engine.token_budget_batches(order[32:], lengths, budget, max_rows=engine.MAX_ROWS)
        plan, position = {}, 0
        for b in batches:
            plan[position] = len(b)
            position += len(b)
        return plan

    policies = {"greedy (before)": (greedy, 0),
                **{f"plan, call = {c} tokens": (planner, int(c)) for c in args.calls.split(",")}}
    forward: dict[str, float] = {}
    times: dict[str, list[float]] = {name: [] for name in [*policies, "pipeline batch 32"]}
    shapes: dict[str, tuple[int, int]] = {}
    predictions = {}
    for r in range(args.repeats):
        for name in list(times) if r % 2 == 0 else list(times)[::-1]:
            start = time.perf_counter()
            if name == "pipeline batch 32":
                out = pipe(frame["text"].tolist(), batch_size=32, truncation=True, max_length=max_length)
                predictions[name] = [model.config.label2id[o["label"]] for o in out]
            else:
                engine._plan, engine.CALL_TOKENS = policies[name]
                record = task.evaluate(loaded, frame, cfg, data.label_names, "m", "test")
                predictions[name] = record.predictions
            times[name].append(time.perf_counter() - start)
            if name != "pipeline batch 32":
                batches: list[dict] = []

                def keep(m, b, batches=batches):  # noqa: ANN001, ANN202
                    batches.append(dict(b))
                    return {"x": b["input_ids"][:, :1]}

                enc = engine.run_engine(model, features, keep, batch_size=32)
                shapes[name] = (enc.num_batches, enc.processed_tokens)
                engine._plan = planner
                with torch.inference_mode(), engine.sdpa_attention(model):  # the same batches, forward alone
                    start = time.perf_counter()
                    for b in batches:
                        model(**b)
                    forward[name] = min(forward.get(name, 1e9), time.perf_counter() - start)
    enc_t = best(lambda: task.encode(frame, tokenizer, cfg))
    peer = min(times["pipeline batch 32"])
    real = sum(len(f["input_ids"]) for f in features)
    print(f"encode {enc_t * 1e3:.0f} ms; pipeline batch 32 best {peer:.3f} s; real tokens {real}")
    for name in policies:
        ours = min(times[name])
        print(f"{name}: best {ours:.3f} s, {shapes[name][0]} batches, {shapes[name][1]} processed tokens "
              f"(efficiency {real / shapes[name][1]:.3f}), ratio {peer / ours:.2f}x (rounds "
              f"{', '.join(f'{p / o:.2f}' for p, o in zip(times['pipeline batch 32'], times[name], strict=True))}), "
              f"identical predictions {predictions[name] == predictions['pipeline batch 32']}; forward alone "
              f"{forward[name]:.3f} s (cardgen outside the forward {ours - forward[name]:+.3f} s)")
    print(f"load {load_average()}")


if __name__ == "__main__":
    main()
