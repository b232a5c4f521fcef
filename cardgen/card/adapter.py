"""The card's "Adapter" and "Memory and precision" sections, from ``record.adapter`` and ``record.resources``.

Numbers are rounded and texts escaped here; ``partials/adapter.md.j2`` only prints. No torch import.
"""

from __future__ import annotations

from typing import Any

from cardgen.card.format import card_path, md_escape
from cardgen.card.speed import mib, params
from cardgen.record import AdapterRecord, MemoryStats, RunRecord

# peft's task type -> the AutoPeftModel class that loads the adapter with its base
AUTO_PEFT = {"SEQ_CLS": "AutoPeftModelForSequenceClassification", "CAUSAL_LM": "AutoPeftModelForCausalLM",
             "QUESTION_ANS": "AutoPeftModelForQuestionAnswering", "SEQ_2_SEQ_LM": "AutoPeftModelForSeq2SeqLM",
             "TOKEN_CLS": "AutoPeftModelForTokenClassification"}


def size(value: int | None) -> str:
    """Bytes for people: GB and MB with one decimal, kB without (adapters are small)."""
    if value is None:
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if value >= scale:
            return f"{value / scale:,.1f} {unit}"
    return f"{value / 1e3:,.0f} kB" if value >= 1e3 else f"{value} bytes"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.2%}" if whole else "—"


def _peak(memory: MemoryStats) -> int | None:
    """The number a stage's peak is compared by: the allocator's on CUDA, the process RSS elsewhere."""
    return memory.cuda_max_allocated_bytes if memory.cuda_max_allocated_bytes is not None else memory.rss_peak_bytes


def compare_memory(record: RunRecord) -> str | None:
    """One sentence: the comparison's peak memory against evaluating the fine-tuned model alone."""
    stages = record.resources.stage_memory if record.resources else {}
    evaluate, compare = stages.get("evaluate"), stages.get("compare")
    if evaluate is None or compare is None:
        return None
    base, peak = _peak(evaluate), _peak(compare)
    if not base or peak is None:
        return None
    what = "CUDA max allocated" if evaluate.cuda_max_allocated_bytes is not None else "peak process RSS"
    return (f"Peak memory ({what}): {mib(peak)} MiB while comparing with the base, {mib(base)} MiB while evaluating "
            f"the fine-tuned model alone ({peak / base - 1:+.1%}).")


def _rows(a: AdapterRecord) -> list[tuple[str, str]]:
    # peft resolves all-linear (or a pattern) to every matching module's full name: shown by their last part
    leaves = sorted({t.rsplit(".", 1)[-1] for t in a.target_modules})
    targets = ", ".join(f"`{md_escape(t)}`" for t in leaves) or "—"
    if len(leaves) < len(a.target_modules):
        targets += f" ({len(a.target_modules)} layers)"
    if a.target_modules_default and a.source == "trained":
        targets += " (peft's default for this architecture)"
    saved = ", ".join(f"`{md_escape(m)}`" for m in a.modules_to_save) or "none"
    rows = [
        ("Method", f"{'LoRA' if a.method == 'lora' else md_escape(a.method)} (peft, task type "
                   f"{md_escape(a.task_type or 'none')})"),
        ("Rank r", str(a.r)),
        ("Alpha (scaling alpha / r)", f"{a.alpha:g} ({a.alpha / a.r:g})"),
        ("Dropout", f"{a.dropout:g}"),
        ("Target modules", targets),
        ("Modules trained and saved in full", saved),
        ("Trainable parameters", f"{a.trainable_parameters:,} of {a.total_parameters:,} "
                                 f"({_share(a.trainable_parameters, a.total_parameters)})"),
    ]
    if a.adapter_size_bytes is not None:
        full = f" vs {size(a.full_size_bytes)} for the full model" if a.full_size_bytes else ""
        share = f" ({_share(a.adapter_size_bytes, a.full_size_bytes)})" if a.full_size_bytes else ""
        rows.append(("Size on disk", f"{size(a.adapter_size_bytes)} (adapter_model.safetensors and "
                                     f"adapter_config.json){full}{share}"))
    elif a.full_size_bytes:
        rows.append(("Full model weights", size(a.full_size_bytes)))
    if a.quantization:
        rows.append(("Base weights", f"{md_escape(a.quantization)} (QLoRA)"))
    if a.merged_dir:
        rows.append(("Merged full weights", f"`{md_escape(a.merged_dir)}/` (the adapter folded into the base's "
                                            "weights; loads with transformers alone)"))
    return rows


def adapter_context(record: RunRecord, base_name: str, run_dir: str | None = None) -> dict[str, Any] | None:
    """What the "Adapter" section prints (None without an adapter)."""
    a = record.adapter
    if a is None:
        return None
    auto = AUTO_PEFT.get(a.task_type or "", "AutoPeftModel")
    labels = len(record.data.label_names)
    extra = f", num_labels={labels}" if a.task_type == "SEQ_CLS" and labels else ""
    loaded_from = md_escape(card_path(a.loaded_from, run_dir)) if a.source == "loaded" and a.loaded_from else None
    origin = "trained by this run" if loaded_from is None else f"loaded from `{loaded_from}` and evaluated as it is"
    return {
        "origin": origin,
        "loaded_from": loaded_from,
        "base": base_name,
        "rows": _rows(a),
        "auto_class": auto,
        "load_args": extra,
        "base_via": md_escape(a.base_evaluation) if a.base_evaluation else None,
        "memory": compare_memory(record),
        "notes": [md_escape(n) for n in a.notes],
    }


def resources_context(record: RunRecord) -> list[tuple[str, str]] | None:
    """The "Memory and precision" rows: how the model was made to fit (None without a record of it)."""
    r = record.resources
    if r is None:
        return None
    rows = [("Weights as loaded", f"{md_escape(r.load_dtype) or '—'} on `{md_escape(r.device)}`"
                                  + (f", {md_escape(r.quantization)}" if r.quantization else ""))]
    if record.training is not None:
        precision = {"no": "none (float32 arithmetic)", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}
        rows += [
            ("Mixed precision (training)", precision.get(r.mixed_precision, md_escape(r.mixed_precision))),
            ("Gradient checkpointing", "on (activations recomputed in the backward pass)"
             if r.gradient_checkpointing else "off"),
            ("Trained parameters", f"{params(r.trainable_parameters)} of {params(r.total_parameters)} "
                                   f"({_share(r.trainable_parameters, r.total_parameters)})"),
        ]
    for stage in ("evaluate", "compare"):
        memory = r.stage_memory.get(stage)
        if memory is not None:
            what = "CUDA max allocated" if memory.cuda_max_allocated_bytes is not None else "peak RSS"
            rows.append((f"Peak memory, {stage} stage", f"{mib(_peak(memory))} MiB ({what})"))
    return rows
