"""The card's YAML front matter: huggingface_hub's ModelCardData and EvalResult (never a null value).
"""

from __future__ import annotations

import re
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
        if record.data.hub_revision:
            kwargs["dataset_revision"] = record.data.hub_revision
        if task == "causal-lm" and ev.extra.get("stream"):  # the exact token stream the number belongs to
            kwargs["metric_args"] = dict(ev.extra["stream"])
        out.append(EvalResult(**kwargs))
    return out


def card_data(record: RunRecord) -> Any:
    """The card's YAML front matter as huggingface_hub ModelCardData (no null values)."""
    from huggingface_hub import ModelCardData

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
    }
    from cardgen.card.generation import generation_widget

    kwargs["widget"] = generation_widget(record) or None  # generation tasks: test prompts
    return ModelCardData(**{k: v for k, v in kwargs.items() if v is not None})


def front_matter(record: RunRecord) -> str:
    """``---\\n<yaml>\\n---`` for the top of README.md."""
    return f"---\n{card_data(record).to_yaml()}\n---\n"
