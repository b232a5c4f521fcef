"""A config as commented YAML (what ``cardgen init`` prints): every section, the values that were given or
inferred, the settings people change most with their defaults, and a comment on each saying what it does or why
it has its value. Loading the text gives exactly the config it was written from."""

from __future__ import annotations

from typing import Any

from cardgen.config import RunConfig

# Settings shown with their defaults even when nothing set them, and what each one does.
SHOWN: dict[str, tuple[str, ...]] = {
    "model": ("name_or_path",),
    "data": ("dataset", "train", "validation", "test", "splits", "text_column", "text_pair_column", "label_column",
             "label_names", "validation_size", "test_size", "split_seed", "max_length", "name"),
    "training": ("learning_rate", "num_epochs", "train_batch_size", "seed", "warmup", "weight_decay",
                 "report_to"),
    "evaluation": ("split",),
    "compare": ("enabled",),
    "benchmark": ("enabled",),
    "card": ("model_name", "base_model", "license", "inferred"),
    "output": ("dir",),
}
DOCS = {
    "model.name_or_path": "Hub id, local directory, .gguf file or pkg:MODULE/PATH",
    "task": "text-classification | masked-lm | causal-lm | question-answering",
    "data.dataset": "a Hub dataset id or a saved DatasetDict folder",
    "data.train": "csv | tsv | json | jsonl | parquet | txt",
    "data.validation": "picks the best epoch; carved out of train when null",
    "data.test": "held out for the final numbers; carved out of train when null",
    "data.splits": "cardgen split -> the dataset's split name",
    "data.label_names": "in label-id order; a label outside them is an error",
    "data.validation_size": "share of train carved out when there is no validation split",
    "data.test_size": "share of train carved out when there is no test split",
    "data.split_seed": "seed of those carved splits",
    "data.max_length": "tokens; longer inputs are truncated, counted and reported",
    "data.name": "the data's name in the card",
    "training.num_epochs": "the best epoch (by validation) is the one saved",
    "training.warmup": "steps when >= 1, a share of all steps when < 1",
    "training.report_to": "experiment trackers: tensorboard, wandb, mlflow, trackio",
    "evaluation.split": "never used for model selection",
    "compare.enabled": "the base model on the same test examples, with intervals and paired tests",
    "benchmark.enabled": "latency, throughput and memory of base and fine-tuned",
    "card.model_name": "default: the output directory's name",
    "card.base_model": "the Hub id to declare when model.name_or_path is a local copy",
    "card.inferred": "what cardgen inferred; the card states it",
    "output.dir": "relative paths in this file are relative to the file",
}


def commented_yaml(cfg: RunConfig, given: dict[str, Any], comments: dict[str, str], header: list[str]) -> str:
    """``cfg`` as commented YAML.

    Args:
        cfg: The resolved config (written for the keys ``given`` lacks).
        given: The config as given: every key in it is written as it is given (``pkg:`` paths stay), beside
            the keys of :data:`SHOWN` with their resolved values.
        comments: Key -> comment that replaces the key's documentation (e.g. why it was inferred).
        header: Comment lines for the top of the file.
    """
    lines = [f"# {line}".rstrip() for line in header]
    resolved = cfg.to_dict()
    for section, value in resolved.items():
        mine = given.get(section)
        if not isinstance(value, dict):
            shown = mine if section in given else value
            lines.append(_line(section, shown, comments.get(section) or DOCS.get(section), 0))
            continue
        mine = mine if isinstance(mine, dict) else {}
        keys = [k for k in value if k in SHOWN.get(section, ()) or k in mine]
        if not keys:
            continue
        lines += ["", f"{section}:"]
        for key in keys:
            full = f"{section}.{key}"
            lines.append(_line(key, mine[key] if key in mine else value[key], comments.get(full) or DOCS.get(full), 2))
    return "\n".join(lines) + "\n"


def _line(key: str, value: Any, comment: str | None, indent: int) -> str:
    import yaml

    pad = " " * indent
    if isinstance(value, list) and value and any(isinstance(v, str) and len(v) > 40 for v in value):
        items = "".join(f"\n{pad}  - {_scalar(v)}" for v in value)
        return f"{pad}{key}:{f'  # {comment}' if comment else ''}{items}"
    text = _scalar(value) if not isinstance(value, (list, dict)) else \
        yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    if isinstance(value, dict) and not value:
        text = "{}"
    line = f"{pad}{key}: {text}"
    return f"{line:<40}  # {comment}" if comment else line


def _scalar(value: Any) -> str:
    import yaml

    text: str = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000)
    return text.removesuffix("\n...\n").strip()
