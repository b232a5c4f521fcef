"""Card sections about where a run came from and what it looked like: settings cardgen inferred, the Hub
revisions of the base model and the data, the experiment trackers that logged training, and examples from the
evaluation split per label. Each builder reads the record only and returns rows ready to print (or None)."""

from __future__ import annotations

from typing import Any

from cardgen.card.format import md_escape
from cardgen.card.metadata import base_model_id
from cardgen.record import RunRecord

HUB = "https://huggingface.co"
TRACKER_NAMES = {"tensorboard": "TensorBoard", "wandb": "Weights & Biases", "mlflow": "MLflow",
                 "trackio": "Trackio"}
EXAMPLE_CHARS = 200


def setup_context(record: RunRecord) -> dict[str, Any] | None:
    """What cardgen inferred for ``cardgen run --model --data`` / ``cardgen init``, and the exact Hub commits of
    the base model and the data; None when there is nothing to say."""
    card_cfg = record.config.get("card") or {}
    inferred = [md_escape(note) for note in card_cfg.get("inferred") or []]
    model_sha, data_sha = record.model.commit_sha, record.data.hub_sha
    if not (inferred or model_sha or data_sha):
        return None
    model_id = record.model.base_model
    hub_model = base_model_id(record) == model_id  # loaded by Hub id (not a local copy)
    return {
        "inferred": inferred,
        "model": md_escape(model_id) if model_sha else None,
        "model_sha": model_sha,
        "model_link": f"{HUB}/{model_id}/tree/{model_sha}" if model_sha and hub_model else None,
        "dataset": md_escape(record.data.hub_dataset or "") if data_sha else None,
        "dataset_sha": data_sha,
        "dataset_link": f"{HUB}/datasets/{record.data.hub_dataset}/tree/{data_sha}"
        if data_sha and record.data.hub_dataset else None,
    }


def trackers_context(record: RunRecord) -> list[dict[str, Any]]:
    """One row per tracker that logged the training: its name and the run's URL, or where it wrote locally."""
    tr = record.training
    if tr is None:
        return []
    rows = []
    for name, where in tr.trackers.items():
        url = where if where.startswith(("http://", "https://")) else None
        rows.append({"name": TRACKER_NAMES.get(name, name), "url": url,
                     "where": None if url else md_escape(where)})
    return rows


def examples_context(record: RunRecord) -> dict[str, Any] | None:
    """The card's table of evaluation examples: per gold label with the model's answer (classification), with
    gold and predicted answers (QA), or plain texts (LM tasks)."""
    if not record.examples:
        return None
    ev = record.evaluation
    task = record.model.task
    label = "Fine-tuned" if record.training else "Model"
    rows = []
    for ex in record.examples:
        rows.append({
            "text": md_escape(ex.text, EXAMPLE_CHARS), "label": md_escape(ex.label), "predicted":
            md_escape(ex.predicted), "mark": "" if not ex.predicted or task == "question-answering"
            else ("✓" if ex.predicted == ex.label else "✗"),
        })
    return {"task": task, "split": ev.split if ev else "test", "rows": rows, "label": label,
            "has_predictions": any(ex.predicted for ex in record.examples),
            "per_label": (record.config.get("card") or {}).get("examples_per_label")}
