"""Why batched perplexity can lose to the guide's batch-1 loop: time, CPU time, page faults and context switches of
each way of scoring the same windows, optionally with busy-loop processes competing for the cores.

A diagnostic, not a row of ``make bench``: it is how the causes in RESULTS.md were measured. Each variant scores the
same token stream (the first VADER test texts, cardgen's stream with its start token, cut to window + k * stride
tokens) and must give the same perplexity as the guide loop.

    python benchmarks/probe_perplexity.py [--tokens N] [--window W] [--stride S] [--burners K] [--variants a,b]
"""

from __future__ import annotations

import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_perplexity import guide_perplexity  # noqa: E402
from common import DATA, SMOLLM, load_average, log, quiet, read_jsonl  # noqa: E402


def usage() -> tuple[float, int, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_minflt, r.ru_nivcsw


def burners(k: int) -> list[subprocess.Popen[bytes]]:
    """``k`` processes that each keep one core busy (pure Python loops), until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]


def before_step(size: int):  # noqa: ANN202
    """cardgen's step before this change (commit 2297bc1): ``logits_to_keep`` from the first predicting position
    of the batch (all positions in a batch holding window 0), the batch's logits in one tensor."""
    import torch.nn.functional as F

    from cardgen.tasks.causal_lm import token_nll

    def step_fn(m, batch):  # noqa: ANN001, ANN202
        import torch

        labels = batch.pop("labels")
        width = labels.shape[1]
        wanted = torch.nonzero((labels[:, 1:] != -100).any(dim=0))
        first = int(wanted[0]) if len(wanted) else width - 1
        if first > 0:
            logits = m(**batch, use_cache=False, logits_to_keep=width - first).logits
            values = F.pad(token_nll(logits, labels[:, first:]), (first, 0))
        else:
            values = token_nll(m(**batch, use_cache=False).logits, labels)
        return {"nll": F.pad(values, (0, size - values.shape[1]))}

    return step_fn


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=10_000)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--stride", type=int, default=32)
    p.add_argument("--burners", type=int, default=0, help="busy-loop processes competing for the cores")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--variants", default="guide,cardgen-b8,cardgen-b32")
    args = p.parse_args()
    quiet()
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from cardgen.config import ModelConfig
    from cardgen.files import package_path
    from cardgen.models import load_pretrained
    from cardgen.tasks import causal_lm

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_pretrained(AutoModelForCausalLM, ModelConfig(name_or_path=package_path(SMOLLM)))
    model, tok = loaded.model.eval(), loaded.tokenizer
    texts, ids = [], np.zeros(0, dtype=np.int64)
    rows = read_jsonl(DATA / "test.jsonl")
    start = causal_lm.start_token_id(tok)
    for n in range(50, len(rows) + 50, 50):
        texts = [r["text"] for r in rows[:n]]
        ids = np.concatenate([[start], causal_lm.token_stream(texts, tok).ids]).astype(np.int64)
        if len(ids) >= args.tokens:
            break
    size, step = args.window, args.stride
    ids = ids[: size + (len(ids) - size) // step * step]
    pad = tok.pad_token_id or 0

    def cardgen(batch: int) -> float:
        nll, predicted = causal_lm.stream_nll(model, ids, size, step, batch_size=batch, pad_token_id=pad)
        return math.exp(float(nll.sum()) / int(predicted.sum()))

    def before(batch: int) -> float:
        from cardgen.engine import run_engine

        feats = causal_lm.window_features(ids, size, step)
        rows = run_engine(model, feats, before_step(size), batch_size=batch, pad_token_id=pad).outputs["nll"]
        total = sum(float(row[end - begin - n:end - begin].astype(np.float64).sum())
                    for (begin, end, n), row in zip(causal_lm.windows(len(ids), size, step), rows, strict=True))
        return math.exp(total / (len(ids) - 1))

    variants = {"guide": lambda: guide_perplexity(model, ids, size, step)}
    for name in args.variants.split(","):
        if name.startswith("cardgen-b"):
            variants[name] = (lambda b: lambda: cardgen(b))(int(name[len("cardgen-b"):]))
        if name.startswith("before-b"):
            variants[name] = (lambda b: lambda: before(b))(int(name[len("before-b"):]))
    chosen = [v for v in args.variants.split(",") if v in variants]
    with torch.inference_mode():
        model(torch.as_tensor(ids[:size])[None])
    log(f"{len(ids)} tokens of {len(texts)} texts, window {size}, stride {step}, torch threads "
        f"{torch.get_num_threads()}, {args.burners} burners, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    procs = burners(args.burners)
    try:
        time.sleep(1 if procs else 0)
        results: dict[str, list[tuple[float, float, int, int, float]]] = {v: [] for v in chosen}
        for r in range(args.rounds):
            for name in chosen if r % 2 == 0 else chosen[::-1]:
                cpu0, flt0, csw0 = usage()
                t0 = time.perf_counter()
                ppl = variants[name]()
                wall = time.perf_counter() - t0
                cpu1, flt1, csw1 = usage()
                results[name].append((wall, cpu1 - cpu0, flt1 - flt0, csw1 - csw0, ppl))
                log(f"round {r} {name}: {wall:.2f} s wall, {cpu1 - cpu0:.2f} s CPU, {flt1 - flt0} minor faults, "
                    f"{csw1 - csw0} involuntary switches, ppl {ppl:.6f}")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    guide = results.get("guide")
    for name, got in results.items():
        walls = sorted(w for w, *_ in got)
        ratio = (f", guide/this {np.median([g[0] / o[0] for g, o in zip(guide, got, strict=True)]):.2f}x"
                 if guide else "")
        print(f"{name}: median {np.median(walls):.2f} s (rounds {', '.join(f'{w:.2f}' for w in walls)}){ratio}; "
              f"faults {got[0][2]}, CPU {got[0][1]:.1f} s, ppl {got[0][4]:.6f}; load {load_average()}")


if __name__ == "__main__":
    main()
