"""The card's YAML front matter: huggingface_hub's ModelCardData and EvalResult (never a null value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cardgen.card.energy import co2_metadata
from cardgen.card.format import slug
from cardgen.record import RunRecord
from cardgen.stats.metrics import METRIC_NAMES, METRIC_TYPES
from cardgen.tasks.catalog import CARD_METRICS, PIPELINE_TAG_NAMES, PIPELINE_TAGS, TASK_NAMES


def model_display_name(record: RunRecord) -> str:
    """The name the card gives the model."""
    card_cfg = record.config.get("card", {})
    if card_cfg.get("model_name"):
        return str(card_cfg["model_name"])
    out_dir = record.config.get("output", {}).get("dir") or "model"
    return Path(out_dir).name


def base_model_id(record: RunRecord) -> str | None:
    """The base model's Hub id for metadata (None for a purely local path, so no null is emitted)."""
    card_cfg = record.config.get("card", {})
    if card_cfg.get("base_model"):
        return str(card_cfg["base_model"])
    # An adapter documented as it is (--no-train) names its base in adapter_config.json.
    name = record.adapter.base_model if record.adapter is not None else record.model.base_model
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name) and not Path(name).exists():
        return name
    return None


def dataset_ids(record: RunRecord) -> tuple[str, str]:
    """(type, display name) of the dataset for model-index."""
    d = record.data
    if d.hub_dataset:
        return d.hub_dataset, record.config.get("data", {}).get("name") or d.hub_dataset
    return slug(d.source), d.source


def eval_results(record: RunRecord) -> list[Any]:
    """huggingface_hub EvalResult entries: the fine-tuned model's test results only."""
    from huggingface_hub import EvalResult

    from cardgen.card.generation import metric_signature

    ev = record.evaluation
    if ev is None:
        return []
    dtype, dname = dataset_ids(record)
    task = record.model.task
    out = []
    for key in CARD_METRICS.get(task, ()):
        value = ev.metrics.get(key)
        if value is None:
            continue
        kwargs: dict[str, Any] = {
            "task_type": record.model.pipeline_tag or PIPELINE_TAGS.get(task, task),
            "task_name": PIPELINE_TAG_NAMES.get(record.model.pipeline_tag, TASK_NAMES.get(task, task)),
            "dataset_type": dtype,
            "dataset_name": dname,
            "dataset_split": ev.split,
            "metric_type": METRIC_TYPES.get(key, key),
            "metric_value": round(float(value), 4),
            "metric_name": METRIC_NAMES.get(key, key),
        }
        signature = metric_signature(record, key)  # sacreBLEU's signature for BLEU and chrF
        if signature:
            kwargs["metric_args"] = {"signature": signature}
        if record.data.hub_config:
            kwargs["dataset_config"] = record.data.hub_config
        revision = record.data.hub_sha or record.data.hub_revision  # the commit loaded, else the one asked for
        if revision:
            kwargs["dataset_revision"] = revision
        if task == "causal-lm" and ev.extra.get("stream"):  # the exact token stream the number belongs to
            kwargs["metric_args"] = {**kwargs.get("metric_args", {}), **ev.extra["stream"]}
        out.append(EvalResult(**kwargs))
    return out


def card_data(record: RunRecord) -> Any:
    """The card's YAML front matter as huggingface_hub ModelCardData (no null values)."""
    from huggingface_hub import ModelCardData

    from cardgen.card.generation import generation_widget

    card_cfg = record.config.get("card", {})
    tags = ["cardgen", "generated_from_trainer" if record.training else "evaluated"]
    base_id = base_model_id(record)
    if record.adapter is not None:  # as peft tags its adapters: the Hub lists them under their base
        tags += [record.adapter.method, "peft", "transformers"] + ([f"base_model:adapter:{base_id}"] if base_id else [])
    tags += [t for t in card_cfg.get("tags", []) if t not in tags]
    results = eval_results(record)
    kwargs: dict[str, Any] = {
        "library_name": "peft" if record.adapter is not None else "transformers",
        "pipeline_tag": record.model.pipeline_tag,
        "tags": tags,
        "license": card_cfg.get("license") or None,
        "language": card_cfg.get("language") or None,
        "base_model": base_id,
        "datasets": [record.data.hub_dataset] if record.data.hub_dataset else None,
        "metrics": sorted({r.metric_type for r in results}) or None,
        "model_name": model_display_name(record),
        "eval_results": results or None,
        "co2_eq_emissions": co2_metadata(record),
        # generation tasks: the test prompts as the model takes them; the others: the card's examples
        "widget": generation_widget(record) or widget_entries(_widget_items(record)) or None,
    }
    return ModelCardData(**{k: v for k, v in kwargs.items() if v is not None})


def front_matter(record: RunRecord) -> str:
    """``---\\n<yaml>\\n---`` for the top of README.md."""
    return f"---\n{card_data(record).to_yaml()}\n---\n"


WIDGET_EXAMPLES = 3  # entries of the Hub's inference widget
WIDGET_CHARS = 500


def widget_entries(items: Iterable[str | Mapping[str, str]], limit: int = WIDGET_EXAMPLES) -> list[dict[str, str]]:
    """The Hub's ``widget:`` list from example inputs: plain texts become ``{"text": ...}``; mappings (e.g.
    ``{"text": question, "context": passage}``, or ``{"text": ..., "example_title": ...}``) are kept with
    empty values dropped. Whitespace is collapsed, texts are cut to :data:`WIDGET_CHARS` characters, duplicates
    and empty entries are skipped, at most ``limit`` entries. Never a null value (the Hub rejects them).
    """
    out: list[dict[str, str]] = []
    for item in items:
        entry = {"text": item} if isinstance(item, str) else dict(item)
        cleaned = {str(k): _widget_text(v) for k, v in entry.items() if v is not None and _widget_text(v)}
        if not cleaned.get("text") or cleaned in out:
            continue
        out.append(cleaned)
        if len(out) >= limit:
            break
    return out


def _widget_text(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= WIDGET_CHARS else text[: WIDGET_CHARS - 1].rstrip() + "…"


def _widget_items(record: RunRecord) -> list[str | dict[str, str]]:
    """Widget inputs from the record's evaluation examples: one text per label first (classification), the
    question with its context (QA), the opening words of a text as a prompt (causal LM). None for masked LM,
    whose widget needs the mask token in the text."""
    task = record.model.task
    examples = record.examples
    if task == "text-classification":
        if (record.config.get("data") or {}).get("text_pair_column"):
            return []  # the widget takes one text, not a pair
        by_label: dict[str, str] = {}
        for ex in examples:
            by_label.setdefault(ex.label, ex.text)
        return [*by_label.values(), *(ex.text for ex in examples)]
    if task == "question-answering":
        return [{"text": ex.text, "context": ex.context} for ex in examples if ex.context]
    if task == "causal-lm":
        return [" ".join(ex.text.split()[:8]) for ex in examples]
    return []


RUN_RECORD_SOURCE = "cardgen run.json"  # source name of the model-index and .eval_results entries


def with_source_url(card: str, url: str) -> str:
    """``card`` with every model-index result pointing at ``url`` (the run.json beside it in the repo) as its
    source; unchanged when the card has no model-index. Results that name a source already keep it."""
    from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

    from cardgen.card.markers import join_front_matter, split_front_matter

    metadata, body = split_front_matter(card)
    if not metadata.get("model-index"):
        return card
    try:
        name, results = model_index_to_eval_results(metadata["model-index"])
    except (KeyError, TypeError, ValueError):
        return card  # lint reports a malformed model-index
    for result in results:
        if result.source_url is None:
            result.source_url, result.source_name = url, RUN_RECORD_SOURCE
    metadata["model-index"] = eval_results_to_model_index(name, results)
    return join_front_matter(metadata, body)


def eval_result_entries(record: RunRecord, source_url: str | None) -> list[Any]:
    """``.eval_results`` entries (huggingface_hub's ``EvalResultEntry``) for the benchmark the config names in
    ``eval_results.dataset_id`` (opt-in; none without it, or without a test result for its metric)."""
    from huggingface_hub import EvalResultEntry

    chosen = record.config.get("eval_results") or {}
    dataset_id = chosen.get("dataset_id")
    ev = record.evaluation
    if not dataset_id or ev is None:
        return []
    metric: str | None = chosen.get("metric") or next(iter(CARD_METRICS.get(record.model.task, ())), None)
    value = ev.metrics.get(metric) if metric is not None else None
    if metric is None or value is None:
        return []
    revision = record.data.hub_sha if record.data.hub_dataset == dataset_id else None
    notes = chosen.get("notes") or f"{METRIC_NAMES.get(metric, metric)} on the {ev.split} split " \
                                   f"({ev.num_examples} examples), measured by cardgen"
    return [EvalResultEntry(dataset_id=dataset_id, task_id=chosen.get("task_id") or "default",
                            value=round(float(value), 4), dataset_revision=revision,
                            date=record.created_at or None, source_url=source_url,
                            source_name=RUN_RECORD_SOURCE if source_url else None, notes=notes)]


def eval_results_yaml(entries: list[Any]) -> str:
    """The ``.eval_results/*.yaml`` text of ``entries`` (huggingface_hub's own serialisation)."""
    import yaml
    from huggingface_hub import eval_result_entries_to_yaml

    return str(yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False, allow_unicode=True))
