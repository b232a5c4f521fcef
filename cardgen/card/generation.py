"""The card's generation parts, from the run record alone: decoding settings and metric signatures, the metrics of
any extra evaluate module, the sentences that gained or lost most by chrF, the generation hyperparameters, the Hub
widget's examples and the model-index signature of each metric. Numbers are rounded and texts escaped here; the
partial ``partials/generation_quality.md.j2`` only prints.
"""

from __future__ import annotations

from typing import Any

from cardgen.card.format import fmt, format_p, md_escape
from cardgen.record import Comparison, EvaluationRecord, GenerationComparison, GenerationExample, RunRecord

SAMPLE_ROWS = 5  # outputs shown when there is no comparison (a run without training)


def _outputs(ev: EvaluationRecord | None) -> dict[str, Any] | None:
    generation = ev.extra.get("generation") if ev is not None else None
    return generation if isinstance(generation, dict) else None


def is_generation(record: RunRecord) -> bool:
    """Whether the run scored generated outputs (seq2seq, or a causal LM on instruction data)."""
    return _outputs(record.evaluation) is not None


def decoding(config: dict[str, Any]) -> str:
    """The decoding method in words, from a recorded GenerationConfig."""
    if config.get("do_sample"):
        return (f"sampling (temperature {config.get('temperature', 1.0)}, top-p {config.get('top_p', 1.0)}, "
                f"top-k {config.get('top_k', 50)})")
    beams = int(config.get("num_beams") or 1)
    return f"beam search with {beams} beams" if beams > 1 else "greedy decoding"


def metric_signature(record: RunRecord, key: str) -> str | None:
    """The signature of a metric as run.json records it (sacreBLEU's for BLEU and chrF), for model-index."""
    out = _outputs(record.evaluation)
    signature = (out or {}).get("signatures", {}).get(key)
    return str(signature) if signature else None


def generation_hyperparameters(record: RunRecord) -> list[tuple[str, str]]:
    """The GenerationConfig of the evaluation as hyperparameter lines (``generation_num_beams: 1`` ...)."""
    out = _outputs(record.evaluation)
    if out is None or record.training is None:
        return []
    config = out.get("generation_config") or {}
    return [(f"generation_{k}", str(v)) for k, v in config.items()]


def generation_widget(record: RunRecord) -> list[dict[str, Any]]:
    """The Hub widget's examples: the first ``generation.widget`` test inputs as the model takes them (a chat
    model's as messages)."""
    out = _outputs(record.evaluation)
    config = record.config
    count = int((config.get("generation") or {}).get("widget", 3))
    if out is None or count <= 0:
        return []
    instruction = config.get("instruction") or {}
    rows: list[dict[str, Any]] = []
    for i, (source, prompt) in enumerate(zip(out["sources"][:count], out["prompts"][:count], strict=True)):
        title = f"Test example {i + 1}"
        if instruction.get("chat_template"):
            content = str(instruction.get("template", "{prompt}")).replace("{prompt}", source)
            rows.append({"messages": [{"role": "user", "content": content}], "example_title": title})
        else:
            rows.append({"text": prompt, "example_title": title})
    return rows


def data_note(record: RunRecord) -> str:
    """The line above the splits table for the generation tasks."""
    cfg = record.config
    size = record.data.max_length
    if record.model.task == "seq2seq":
        s = cfg.get("seq2seq") or {}
        prefix = f", each prefixed with {md_escape(repr(s['source_prefix']))}" if s.get("source_prefix") else ""
        return (f"Pairs of `{md_escape(s.get('source_column', 'source'))}` (input{prefix}) and "
                f"`{md_escape(s.get('target_column', 'target'))}` (reference). Inputs longer than {size} tokens were "
                f"truncated; training targets were cut at {s.get('max_target_length', 128)} tokens, but every "
                "metric compares the outputs with the untouched reference texts.")
    ins = cfg.get("instruction") or {}
    how = ("the chat template of the tokenizer" if ins.get("chat_template") else "no chat template")
    data_cfg = cfg.get("data") or {}
    return (f"Each example is a prompt (template `{md_escape(ins.get('template', '{prompt}'))}`, {how}) and its "
            f"reference completion. Training predicts only the completion and the end token (prompt tokens carry no "
            f"loss); examples longer than {data_cfg.get('max_length', size)} tokens were cut.")


def example_rows(items: list[GenerationExample]) -> list[dict[str, str]]:
    """Escaped rows of the gains or losses table."""
    return [{"index": str(e.index), "source": md_escape(e.source, 200), "reference": md_escape(e.reference, 200),
             "base": md_escape(e.base, 200) or "*(nothing)*", "fine_tuned": md_escape(e.fine_tuned, 200) or
             "*(nothing)*", "base_chrf": fmt(e.base_chrf, 2), "fine_tuned_chrf": fmt(e.fine_tuned_chrf, 2),
             "delta": ("+" if e.fine_tuned_chrf > e.base_chrf else "") + fmt(e.fine_tuned_chrf - e.base_chrf, 2)}
            for e in items]


def examples_context(g: GenerationComparison, n: int) -> dict[str, Any]:
    """What ``partials/generation_examples.md.j2`` prints (also ``cardgen compare --markdown``)."""
    from cardgen.stats.metrics import METRIC_NAMES

    return {"gains": example_rows(g.gains), "losses": example_rows(g.losses), "better": g.better, "worse": g.worse,
            "same": g.same, "n": n, "metric": METRIC_NAMES.get(g.sort_metric, g.sort_metric),
            "bootstrap_p": [(METRIC_NAMES.get(k, k), format_p(v)) for k, v in g.bootstrap_p_values.items()
                            if k in ("bleu", "chrf")]}


def _code(text: str) -> str:
    """A signature for a code span: only the characters signatures are made of (run.json may have been edited)."""
    import re

    return re.sub(r"[^A-Za-z0-9:|._+-]", "", str(text))[:300]


def _extra_metrics(record: RunRecord) -> list[dict[str, str]]:
    ft = (record.evaluation.extra.get("evaluate") if record.evaluation else None) or {}
    base = (record.base_evaluation.extra.get("evaluate") if record.base_evaluation else None) or {}
    return [{"name": md_escape(f"{name} {key}"), "fine_tuned": fmt(value),
             "base": fmt(base.get(name, {}).get(key)) if base else "—"}
            for name, values in ft.items() for key, value in values.items()]


def _samples(out: dict[str, Any]) -> list[dict[str, str]]:
    return [{"source": md_escape(s, 200), "reference": md_escape(r, 200), "output": md_escape(o, 200) or "*(nothing)*"}
            for s, r, o in list(zip(out["sources"], out["references"], out["outputs"], strict=True))[:SAMPLE_ROWS]]


def generation_context(record: RunRecord) -> dict[str, Any] | None:
    """The "Generation" section's context (None for tasks that do not generate)."""
    out = _outputs(record.evaluation)
    if out is None:
        return None
    from cardgen.stats.metrics import METRIC_NAMES

    config = out.get("generation_config") or {}
    comparison: Comparison | None = record.comparison
    examples = None
    if comparison is not None and comparison.generation is not None:
        examples = examples_context(comparison.generation, comparison.num_examples)
    shown = {"bleu": "BLEU", "chrf": "chrF", "rouge1": "ROUGE-1/2/L/Lsum", "exact_match": METRIC_NAMES["exact_match"]}
    signatures = [(name, _code(out["signatures"][k])) for k, name in shown.items() if k in out.get("signatures", {})]
    return {
        "decoding": decoding(config), "max_new_tokens": config.get("max_new_tokens"),
        "eos_token_id": config.get("eos_token_id"), "n": len(out["outputs"]),
        "mean_length": fmt(sum(out["output_tokens"]) / max(1, len(out["output_tokens"])), 1),
        "truncated": int(out.get("truncated_sources", 0)), "signatures": signatures,
        "extra_metrics": _extra_metrics(record), "examples": examples,
        "samples": _samples(out) if examples is None else [],
        "label": "Fine-tuned" if record.training else "Model",
    }
