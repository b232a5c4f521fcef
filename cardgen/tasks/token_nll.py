"""Per-token negative log-likelihood for the language-model tasks, as a :func:`cardgen.engine.run_engine` step.

The output head (the vocabulary-wide matrix product) runs only on the positions that predict a label; the model's
logits are checked once to really be ``head(backbone(...))`` before relying on it.
"""

from __future__ import annotations

from typing import Any

from cardgen.engine import StepFn
from cardgen.sharding import has_sharded_parameters

# Logits of one output-head call at most (a bound on memory only). Measured on a 2-core CPU (benchmarks/
# probe_perplexity.py): splitting a batch's head into calls of 16 MiB made it 1.4x slower when other processes
# shared the cores (each call is one more parallel region whose threads wait for each other), and the page faults
# of one large buffer per batch cost nothing measurable, so a batch's predicted positions go through the head in
# one call up to this size.
HEAD_CHUNK_BYTES = 1 << 29


def output_head(model: Any) -> tuple[Any, Any] | None:
    """(backbone, output head) of a model whose logits are ``head(backbone(...).last_hidden_state)`` as far as its
    attributes say (a transformers ``*ForCausalLM``/``*ForMaskedLM``); None otherwise. :func:`token_nll_step`
    checks the claim against the model's own forward before relying on it."""
    if has_sharded_parameters(model):  # FSDP / ZeRO-3 gather weights in the wrapped model's own forward hooks
        return None
    get_base = getattr(model, "get_base_model", None)  # a peft model: the transformers model, its LoRA layers inside
    if callable(get_base):
        model = get_base()
    backbone = getattr(model, "base_model", None)
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if backbone is None or backbone is model or head is None:
        return None
    return backbone, head


def _plain_nll(model: Any, batch: dict[str, Any], labels: Any, shift: bool) -> Any:
    """Per-position NLL from the model's full logits (models whose head cannot be split off)."""
    import torch
    import torch.nn.functional as F

    logits = model(**batch, use_cache=False).logits
    target = labels[:, 1:] if shift else labels
    scores = logits[:, :-1] if shift else logits
    out = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
    nll = F.cross_entropy(scores.reshape(-1, scores.shape[-1]).float(), target.reshape(-1), ignore_index=-100,
                          reduction="none").view(target.shape)
    out[:, int(shift):] = nll
    return out


def _same_logits(model: Any, batch: dict[str, Any], hidden: Any, head: Any) -> bool:
    """Whether ``head(hidden)`` is the model's own logit at the last position of the batch's first row (a model
    that scales or caps its logits after the head, e.g. Gemma 2's soft-capping, fails this)."""
    import inspect

    import torch

    row = {k: v[:1] for k, v in batch.items()}
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    full = model(**row, use_cache=False, **kwargs).logits[0, -1].float()
    ours = head(hidden[:1, -1:]).reshape(-1).float()
    return bool(full.shape == ours.shape and torch.allclose(full, ours, rtol=1e-4, atol=1e-4 * float(full.abs().max())))


def token_nll_step(model: Any, width: int, shift: bool = True) -> StepFn:
    """A :func:`run_engine` step giving the NLL (nats, float32) of every labelled token, shape (batch, ``width``).

    The batch carries ``labels`` (-100 where nothing is predicted). With ``shift`` (causal LM) the token at ``j``
    is predicted from position ``j - 1``; without (masked LM) at ``j`` itself. The output head (the vocabulary-wide
    matrix product and its log-softmax) runs only on the positions that predict a label, gathered from every row
    of the batch into one call (up to :data:`HEAD_CHUNK_BYTES` of logits): no work on context positions. Whether the
    model's logits really are ``head(backbone(...))`` is checked once against its own forward; models that transform
    their logits after the head get the plain path (full logits), with the same numbers.
    """
    import torch
    import torch.nn.functional as F

    parts = output_head(model)
    state = {"split": parts is not None, "checked": False}

    def step(m: Any, batch: dict[str, Any]) -> dict[str, Any]:
        labels = batch.pop("labels")
        if not state["split"] or parts is None:
            return {"nll": F.pad(_plain_nll(m, batch, labels, shift), (0, width - labels.shape[1]))}
        backbone, head = parts
        hidden = backbone(**batch, use_cache=False).last_hidden_state
        if not state["checked"]:
            state["checked"] = True
            state["split"] = _same_logits(m, batch, hidden, head)
            if not state["split"]:
                return {"nll": F.pad(_plain_nll(m, batch, labels, shift), (0, width - labels.shape[1]))}
        target = labels[:, 1:] if shift else labels
        rows, cols = torch.nonzero(target != -100, as_tuple=True)
        out = torch.zeros((labels.shape[0], width), dtype=torch.float32, device=labels.device)
        vocab = head.weight.shape[0] if hasattr(head, "weight") else 1
        chunk = max(1, HEAD_CHUNK_BYTES // (4 * vocab))
        for i in range(0, len(rows), chunk):
            r, c = rows[i:i + chunk], cols[i:i + chunk]
            logits = head(hidden[r, c])
            out[r, c + int(shift)] = F.cross_entropy(logits.float(), target[r, c], reduction="none")
        return {"nll": out}

    return step
