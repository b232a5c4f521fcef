"""RunRecord -> context -> Jinja body + huggingface_hub ModelCardData metadata -> card text.

The card is a pure function of the run record. Python rounds numbers and builds rows; templates only print.
Templates render in Jinja's sandbox with StrictUndefined, so a missing value fails loudly instead of printing
blank. No torch import here: ``cardgen card`` re-renders in well under a second.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from cardgen.errors import TemplateError
from cardgen.record import EvaluationRecord, RunRecord

DEFAULT_TEMPLATE = "model_card.md.j2"
TASK_NAMES = {
    "text-classification": "Text Classification",
    "masked-lm": "Fill-Mask",
    "causal-lm": "Text Generation",
    "question-answering": "Question Answering",
}
PIPELINE_TAGS = {
    "text-classification": "text-classification",
    "masked-lm": "fill-mask",
    "causal-lm": "text-generation",
    "question-answering": "question-answering",
}
METRIC_TYPES = {"accuracy": "accuracy", "f1_macro": "f1", "precision_macro": "precision", "recall_macro": "recall",
                "f1_positive": "f1", "perplexity": "perplexity", "exact_match": "exact_match", "f1": "f1",
                "bits_per_byte": "bits_per_byte"}
METRIC_NAMES = {
    "accuracy": "Accuracy", "f1_macro": "F1 (macro)", "precision_macro": "Precision (macro)",
    "recall_macro": "Recall (macro)", "f1_positive": "F1 (positive class)",
    "precision_positive": "Precision (positive class)", "recall_positive": "Recall (positive class)",
    "loss": "Loss", "perplexity": "Perplexity", "bits_per_byte": "Bits per byte", "exact_match": "Exact match",
    "f1": "F1",
}
# Kept in run.json but left out of the per-epoch table to keep it readable.
EPOCH_TABLE_SKIP = {"precision_positive", "recall_positive"}
# The metrics that go into model-index, in order, per task.
CARD_METRICS = {
    "text-classification": ("accuracy", "f1_macro", "precision_macro", "recall_macro", "f1_positive"),
    "masked-lm": ("perplexity",),
    "causal-lm": ("perplexity", "bits_per_byte"),
    "question-answering": ("exact_match", "f1"),
}


def templates_dir() -> Path:
    """Where the built-in templates are: inside the wheel, or the repository's top-level templates/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / DEFAULT_TEMPLATE).is_file():
            return candidate
    raise TemplateError("cardgen's built-in templates are missing", "reinstall cardgen")  # pragma: no cover


def fmt(value: Any, digits: int = 4) -> str:
    """A number for the card: floats to ``digits`` decimals, ints as they are, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) < 10 ** (-digits) or abs(value) >= 1e6):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def md_escape(text: Any, limit: int | None = None) -> str:
    """Text from data made safe inside Markdown and HTML: no tags, no table breaks, one line."""
    text = " ".join(str(text).split())
    if limit and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    text = html.escape(text, quote=True)
    return re.sub(r"([\\`*_\[\]|#])", r"\\\1", text)


def slug(text: str) -> str:
    """A Hub-style identifier made of a display name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dataset"


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
    name = record.model.base_model
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
            "task_type": PIPELINE_TAGS.get(task, task),
            "task_name": TASK_NAMES.get(task, task),
            "dataset_type": dtype,
            "dataset_name": dname,
            "dataset_split": ev.split,
            "metric_type": METRIC_TYPES.get(key, key),
            "metric_value": round(float(value), 4),
            "metric_name": METRIC_NAMES.get(key, key),
        }
        if record.data.hub_config:
            kwargs["dataset_config"] = record.data.hub_config
        if record.data.hub_revision:
            kwargs["dataset_revision"] = record.data.hub_revision
        out.append(EvalResult(**kwargs))
    return out


def card_data(record: RunRecord) -> Any:
    """The card's YAML front matter as huggingface_hub ModelCardData (no null values)."""
    from huggingface_hub import ModelCardData

    card_cfg = record.config.get("card", {})
    tags = ["cardgen", "generated_from_trainer" if record.training else "evaluated"]
    tags += [t for t in card_cfg.get("tags", []) if t not in tags]
    results = eval_results(record)
    kwargs: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": record.model.pipeline_tag,
        "tags": tags,
        "license": card_cfg.get("license") or None,
        "language": card_cfg.get("language") or None,
        "base_model": base_model_id(record),
        "datasets": [record.data.hub_dataset] if record.data.hub_dataset else None,
        "metrics": sorted({r.metric_type for r in results}) or None,
        "model_name": model_display_name(record),
        "eval_results": results or None,
    }
    return ModelCardData(**{k: v for k, v in kwargs.items() if v is not None})


def front_matter(record: RunRecord) -> str:
    """``---\\n<yaml>\\n---`` for the top of README.md."""
    return f"---\n{card_data(record).to_yaml()}\n---\n"


def _metric_rows(ev: EvaluationRecord) -> list[tuple[str, str]]:
    keys = [k for k in METRIC_NAMES if k in ev.metrics] + [k for k in ev.metrics if k not in METRIC_NAMES]
    return [(METRIC_NAMES.get(k, k), fmt(ev.metrics[k])) for k in keys]


def _epoch_table(record: RunRecord) -> dict[str, Any] | None:
    tr = record.training
    if tr is None or not tr.epochs:
        return None
    metric_keys: list[str] = []
    for row in tr.epochs:
        metric_keys += [k for k in row.metrics if k not in metric_keys and k not in EPOCH_TABLE_SKIP]
    header = ["Training Loss", "Epoch", "Step", "Validation Loss"] + [METRIC_NAMES.get(k, k) for k in metric_keys]
    rows = []
    for row in tr.epochs:
        best = tr.best_step is not None and row.step == tr.best_step
        cells = [fmt(row.training_loss) if row.training_loss is not None else "No log", fmt(row.epoch, 2),
                 str(row.step), fmt(row.validation_loss)] + [fmt(row.metrics.get(k)) for k in metric_keys]
        if best:
            cells = [f"**{c}**" for c in cells]
        rows.append(cells)
    return {"header": header, "rows": rows}


def _hyperparameters(record: RunRecord) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    tr = record.training
    if tr is None:
        return [], []
    shown = [(k, str(v)) for k, v in tr.hyperparameters.items()]
    covered = set(tr.hyperparameters) | {
        "per_device_train_batch_size", "per_device_eval_batch_size", "num_train_epochs", "optim",
        "adam_beta1", "adam_beta2", "adam_epsilon", "warmup_steps", "fp16", "bf16", "output_dir",
        "logging_dir", "run_name", "hub_model_id", "report_to",
    }
    other = [(k, str(tr.arguments.get(k))) for k in tr.non_default if k not in covered]
    return shown, other


def _splits(record: RunRecord) -> list[dict[str, Any]]:
    out = []
    for name in ("train", "validation", "test"):
        s = record.data.splits.get(name)
        if s is None:
            continue
        dist = ", ".join(f"{md_escape(k)} {v}" for k, v in s.label_distribution.items())
        out.append({
            "name": name, "n": s.num_examples, "source": md_escape(short_source(s.source)), "labels": dist or "—",
            "truncated": s.num_truncated, "fingerprint": s.fingerprint[:12],
            "tokens": (f"{fmt(s.token_length.get('mean'), 1)} / {fmt(s.token_length.get('p95'), 0)} / "
                       f"{s.token_length.get('max')}") if s.token_length else "—",
        })
    return out


def short_source(source: str) -> str:
    """A data source for display: paths relative to the working directory when below it, else the file name."""
    head, sep, tail = source.partition(" (")
    path = Path(head)
    if path.is_absolute():
        try:
            head = str(path.relative_to(Path.cwd()))
        except ValueError:
            head = path.name
    return head + sep + tail


def build_context(record: RunRecord) -> dict[str, Any]:
    """Everything the template prints, already rounded and escaped."""
    card_cfg = record.config.get("card", {})
    env = record.environment
    packages = env.packages
    framework = [(label, packages[key]) for key, label in (
        ("transformers", "Transformers"), ("torch", "PyTorch"), ("datasets", "Datasets"),
        ("tokenizers", "Tokenizers"), ("accelerate", "Accelerate"), ("huggingface_hub", "huggingface_hub"),
        ("cardgen", "cardgen")) if key in packages]
    if env.cuda:
        framework.insert(2, ("CUDA", env.cuda))
    ev = record.evaluation
    hp, other = _hyperparameters(record)
    dtype, dname = dataset_ids(record)
    base_id = base_model_id(record)
    return {
        "model_name": md_escape(model_display_name(record)),
        "base_model": md_escape(base_id or record.model.base_model),
        "base_model_link": f"https://huggingface.co/{base_id}" if base_id else None,
        "trained": record.training is not None,
        "task": record.model.task,
        "task_name": TASK_NAMES.get(record.model.task, record.model.task),
        "dataset_name": md_escape(dname),
        "dataset_link": f"https://huggingface.co/datasets/{record.data.hub_dataset}" if record.data.hub_dataset
        else None,
        "status": record.status,
        "description": card_cfg.get("description"),
        "intended_uses": card_cfg.get("intended_uses"),
        "limitations": card_cfg.get("limitations"),
        "citation": card_cfg.get("citation"),
        "test_split": ev.split if ev else None,
        "test_n": ev.num_examples if ev else 0,
        "results": _metric_rows(ev) if ev else [],
        "label_names": [md_escape(n) for n in record.data.label_names],
        "splits": _splits(record),
        "max_length": record.data.max_length,
        "files": [(md_escape(Path(p).name), h[:12]) for p, h in record.data.files.items()],
        "hyperparameters": hp,
        "other_settings": other,
        "epoch_table": _epoch_table(record),
        "training": record.training,
        "best_epoch": fmt(record.training.best_epoch, 2) if record.training and record.training.best_epoch else None,
        "best_metric_name": METRIC_NAMES.get(record.training.metric_for_best_model,
                                             record.training.metric_for_best_model) if record.training else None,
        "best_metric": fmt(record.training.best_metric) if record.training else None,
        "overfitting_note": record.training.overfitting_note if record.training else None,
        "newly_initialized": record.model.newly_initialized,
        "model_notes": record.model.notes,
        "num_parameters": f"{record.model.num_parameters / 1e6:.1f}M",
        "architecture": record.model.architecture,
        "trust_remote_code": record.model.trust_remote_code,
        "framework": framework,
        "hardware": {
            "device": env.device, "device_name": env.device_name, "num_devices": env.num_devices,
            "cpu_count": env.cpu_count, "threads": env.torch_threads, "memory_gb": env.memory_gb,
            "platform": env.platform, "python": env.python,
        },
        "git_commit": env.git_commit,
        "stage_seconds": [(k, fmt(v, 1)) for k, v in record.stage_seconds.items()],
        "warnings": record.warnings,
        "comparison": record.comparison,
        "benchmark": record.benchmark,
        "data_report": record.data.report or None,
        "created_at": record.created_at,
        "cardgen_version": record.cardgen_version,
        "schema_version": record.schema_version,
        "dataset_type": dtype,
        "extras": record.extras,
    }


def _environment(search_dirs: list[Path]) -> Any:
    from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        loader=ChoiceLoader([FileSystemLoader(str(d)) for d in search_dirs]),
        undefined=StrictUndefined,
        autoescape=False,  # Markdown, not HTML: data texts are escaped by md_escape when the context is built
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["md_escape"] = md_escape
    return env


def render_body(record: RunRecord, template: str | Path | None = None) -> str:
    """The card body (Markdown, no front matter) from the built-in template or a user template file."""
    from jinja2 import TemplateSyntaxError, UndefinedError
    from jinja2.exceptions import SecurityError, TemplateNotFound

    builtin = templates_dir()
    if template is None:
        dirs, name = [builtin], DEFAULT_TEMPLATE
    else:
        path = Path(template)
        if not path.is_file():
            raise TemplateError(f"template {path} does not exist", "check the --template path")
        dirs, name = [path.resolve().parent, builtin], path.name
    env = _environment(dirs)
    context = build_context(record)
    try:
        return str(env.get_template(name).render(**context))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template {exc.filename or name} has a syntax error on line {exc.lineno}: {exc.message}",
                            "fix the template") from exc
    except UndefinedError as exc:
        raise TemplateError(f"template {name} uses an undefined value: {exc.message}",
                            "use only the names cardgen provides (see templates/model_card.md.j2)") from exc
    except SecurityError as exc:
        raise TemplateError(f"template {name} tried an unsafe operation: {exc}",
                            "templates may only print the values cardgen provides") from exc
    except TemplateNotFound as exc:
        raise TemplateError(f"template {name} includes {exc.name}, which does not exist",
                            "check the include path") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise TemplateError(f"template {name} failed: {exc}", "fix the template") from exc


def render_card(record: RunRecord, template: str | Path | None = None) -> str:
    """The whole card: YAML front matter made by huggingface_hub, then the rendered body."""
    return front_matter(record) + "\n" + render_body(record, template).lstrip("\n")


def write_card(record: RunRecord, path: Path, template: str | Path | None = None) -> str:
    """Render and write the card atomically; an existing hand-edited card keeps its text outside the markers."""
    from cardgen.io import atomic_write_text

    text = render_card(record, template)
    if path.is_file():
        try:
            from cardgen.markers import merge_generated
        except ImportError:  # pragma: no cover - markers land with the push feature
            merge_generated = None
        if merge_generated is not None:
            text = merge_generated(path.read_text(encoding="utf-8"), text)
    atomic_write_text(path, text)
    return text
