"""RunRecord -> the context the card template prints: every number rounded, every text escaped.

The card is a pure function of the run record. Python rounds numbers and builds rows; templates only print.
No torch import here: ``cardgen card`` re-renders in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cardgen.card.format import card_path, fmt, md_escape, signed
from cardgen.card.generation import data_note, generation_context, generation_hyperparameters, is_generation
from cardgen.card.metadata import base_model_id, dataset_ids, model_display_name
from cardgen.data_report import leakage_warnings
from cardgen.record import EvaluationRecord, RunRecord
from cardgen.stats.metrics import LOWER_IS_BETTER, METRIC_NAMES
from cardgen.tasks.catalog import PIPELINE_TAG_NAMES, TASK_NAMES

# Kept in run.json but left out of the per-epoch table to keep it readable.
NEWLY_INITIALIZED_SHOWN = 8  # weight names listed in the card; the rest are counted
EPOCH_TABLE_SKIP = {"precision_positive", "recall_positive"}


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
            "name": name, "n": s.num_examples, "source": md_escape(short_source(s.source, _run_dir(record))), "labels": dist or "—",
            "truncated": s.num_truncated, "fingerprint": s.fingerprint[:12],
            "tokens": (f"{fmt(s.token_length.get('mean'), 1)} / {fmt(s.token_length.get('p95'), 0)} / "
                       f"{s.token_length.get('max')}") if s.token_length else "—",
        })
    return out


def short_source(source: str, run_dir: str | None = None) -> str:
    """A data source for display: a path relative to the run directory (see :func:`card_path`), never to the
    working directory, so the card has the same bytes wherever it is rendered."""
    head, sep, tail = source.partition(" (")
    return card_path(head, run_dir) + sep + tail


def _run_dir(record: RunRecord) -> str | None:
    """The run's output directory as recorded (what the card's paths are relative to)."""
    out_dir = (record.config.get("output") or {}).get("dir")
    return str(out_dir) if out_dir else None


def _split_role(record: RunRecord) -> str:
    """What training did with the evaluation split, as the record says: "held-out" (nothing), "selection"
    (the best checkpoint was picked on it) or "training" (the model was trained on it)."""
    ev, tr = record.evaluation, record.training
    if ev is not None and ev.extra.get("used_for_model_selection"):
        return "selection"
    if ev is None or tr is None:
        return "held-out"
    if ev.split == "train":
        return "training"
    if ev.split == "validation" and tr.arguments.get("load_best_model_at_end", True):
        return "selection"
    return "held-out"


def _data_report(record: RunRecord) -> dict[str, Any] | None:
    """Rows of the card's "Data checks" section from record.data.report (None when the record has none)."""
    report = record.data.report
    if not report:
        return None
    duplicates = [{
        "split": split, "rows": d.get("rows", 0), "exact": d.get("duplicate_rows", 0),
        "normalized": d.get("duplicate_rows_normalized", d.get("duplicate_rows", 0)),
        "conflicting": d.get("conflicting_labels", 0),
        "examples": [md_escape(t, 100) for t in d.get("examples", [])],
    } for split, d in report.get("duplicates", {}).items()]
    overlap = [{
        "first": o["splits"][0], "second": o["splits"][1], "rows": o.get("rows", 0), "exact": o.get("exact", 0),
        "normalized": o.get("normalized", 0), "share": f"{o.get('fraction', 0.0):.1%}",
        "examples": [md_escape(t, 100) for t in o.get("examples", [])],
    } for o in report.get("overlap", []) if len(o.get("splits", [])) == 2]
    return {"duplicates": duplicates, "overlap": overlap}


def _leakage(record: RunRecord) -> list[str]:
    """One sentence per evaluation split that shares text with train, for the warning at the top of the card."""
    overlaps = {o["splits"][1]: o for o in (record.data.report or {}).get("overlap", [])
                if len(o.get("splits", [])) == 2 and o["splits"][0] == "train"}
    lines = []
    for split, consequence in (
        ("test", "the test results likely overstate how the model does on text it has not seen"),
        ("validation", "validation scores and the choice of the best epoch are optimistic"),
    ):
        o = overlaps.get(split)
        if not o or not o.get("normalized"):
            continue
        exact, total = int(o.get("exact", 0)), int(o["normalized"])
        lines.append(f"{total} of {o.get('rows', 0)} {split} examples ({o.get('fraction', 0.0):.1%}) also appear in "
                     f"the training data ({exact} exactly, {total - exact} more after normalising case and "
                     f"whitespace): {consequence}.")
    if lines and "test" in overlaps and not overlaps["test"].get("normalized"):
        lines.append("The test split shares no text with the training data.")
    return lines


def _plots(record: RunRecord) -> list[dict[str, str]]:
    """The plots written beside the card (see cardgen.plots), as title and relative file name."""
    return [{"title": md_escape(p.get("title", p["file"])), "file": p["file"]}
            for p in record.extras.get("plots", []) if isinstance(p, dict) and p.get("file")]


def _evaluation_note(record: RunRecord) -> str | None:
    """How the LM and QA tasks computed their headline numbers (written by the task into the record)."""
    ev = record.evaluation
    if ev is None or record.model.task == "text-classification":
        return None
    return ev.extra.get("method") or None


def _data_note(record: RunRecord) -> str:
    """The line above the splits table: what was cut, windowed or masked."""
    task, size = record.model.task, record.data.max_length
    if is_generation(record):  # seq2seq, or a causal LM on instruction data
        return data_note(record)
    lm = record.config.get("lm") or {}
    qa = record.config.get("qa") or {}
    ev = record.evaluation
    if task == "causal-lm":
        step = ev.extra.get("stride") if ev else None
        step_text = f"advance by {step} tokens" if step else "slide over it"
        return (f"The texts of each split are joined by blank lines into one token stream: training uses blocks of "
                f"{size} tokens, evaluation windows of {size} tokens {step_text}, so no text is truncated.")
    if task == "masked-lm":
        unit = "words" if lm.get("whole_word_masking") else "tokens"
        return (f"Texts longer than {size} tokens were truncated. Training masks {lm.get('mlm_probability', 0.15):g} "
                f"of the {unit} afresh in every batch; validation and test use fixed masks (seed "
                f"{lm.get('mask_seed', 0)}), the same for every epoch and for the base model.")
    if task == "question-answering":
        kind = "SQuAD v2 (unanswerable questions included)" if qa.get("version_2") else "SQuAD"
        return (f"{kind} format. Question and context are cut into windows of {size} tokens that overlap by "
                f"{qa.get('doc_stride', 128)} tokens, so no context is lost; answers are spans of at most "
                f"{qa.get('max_answer_length', 30)} tokens.")
    return f"Inputs longer than {size} tokens were truncated."


def _base_vs_finetuned(record: RunRecord) -> dict[str, Any] | None:
    """Base and fine-tuned numbers of the LM and QA tasks, both measured by the task on the same inputs, with
    intervals and p-values when the compare stage computed them (``cardgen.compare_scores``)."""
    base, ft = record.base_evaluation, record.evaluation
    if base is None or ft is None or record.model.task == "text-classification":
        return None
    from cardgen.card.comparison import row_p
    from cardgen.card.format import format_interval

    meaningful = bool(base.extra.get("meaningful", True))
    stats = {r.key: r for r in record.comparison.metrics} if record.comparison is not None else {}
    keys = [k for k in METRIC_NAMES if k in ft.metrics and k in base.metrics]
    keys += [k for k in ft.metrics if k in base.metrics and k not in keys]
    rows = []
    for key in keys:
        b, f = base.metrics[key], ft.metrics[key]
        r = stats.get(key)
        rows.append({
            "name": METRIC_NAMES.get(key, key) + (" (lower is better)" if key in LOWER_IS_BETTER else ""),
            "base": (format_interval(r.base) if r else fmt(b)) + ("" if meaningful else " (not meaningful)"),
            "fine_tuned": format_interval(r.fine_tuned) if r else fmt(f),
            "delta": (format_interval(r.delta, signed=True) if r else signed(f - b))
            if meaningful and b is not None and f is not None else "—",
            "p": row_p(record.comparison, r) if record.comparison and r and r.p_value is not None else "—",
        })
    same = None
    fp_base, fp_ft = base.extra.get("mask_fingerprint"), ft.extra.get("mask_fingerprint")
    if fp_base and fp_ft:
        same = (f"Both saw the same masked inputs (mask fingerprint `{fp_ft[:12]}`)." if fp_base == fp_ft
                else "The two evaluations saw different masks: their perplexities are not comparable.")
    c = record.comparison
    intervals = None
    if c is not None and stats:
        test = next(iter(stats.values())).test
        unit = "examples" if c.generation is not None else "documents"
        intervals = (f"{c.confidence * 100:g}% intervals in brackets, from a {c.interval_method} "
                     f"({c.num_examples} {unit}, {c.bootstrap_samples} resamples, seed {c.seed}; base, fine-tuned "
                     f"and change use the same resampled {unit}); p-values from a {test} "
                     f"({c.permutations:,} permutations, two-sided).")
    return {"split": ft.split, "n": ft.num_examples, "rows": rows, "meaningful": meaningful,
            "note": base.extra.get("note"), "same_inputs": same, "intervals": intervals,
            "base_via": bool(base.extra.get("base_via"))}


def _generations(record: RunRecord) -> dict[str, Any] | None:
    """Greedy generations from the configured prompts: base next to fine-tuned."""
    ev = record.evaluation
    if ev is None or record.model.task != "causal-lm" or not ev.extra.get("generations"):
        return None
    base_ev = record.base_evaluation
    base = {g["prompt"]: g["output"] for g in (base_ev.extra.get("generations") or [])} if base_ev else {}

    def text(value: str) -> str:
        return md_escape(value, 300) if value.strip() else "*(nothing)*"

    rows = [{"prompt": md_escape(g["prompt"], 200), "output": text(g["output"]),
             "base": text(base[g["prompt"]]) if g["prompt"] in base else "—"} for g in ev.extra["generations"]]
    return {"rows": rows, "has_base": bool(base), "max_new_tokens": ev.extra.get("max_new_tokens"),
            "label": "Fine-tuned" if record.training else "Model"}


def _speed(record: RunRecord) -> dict[str, Any] | None:
    """The "Speed and size" section's context (None without a benchmark)."""
    if record.benchmark is None:
        return None
    from cardgen.card.speed import speed_context

    return speed_context(record.benchmark)


def _task_name(record: RunRecord) -> str:
    """The task in words; seq2seq by its pipeline tag (Translation, Summarization, Text2Text Generation)."""
    return PIPELINE_TAG_NAMES.get(record.model.pipeline_tag) or TASK_NAMES.get(record.model.task, record.model.task)


def build_context(record: RunRecord) -> dict[str, Any]:
    """Everything the template prints, already rounded and escaped."""
    from cardgen.card.comparison import comparison_context
    from cardgen.card.reproduction import perplexity_code

    card_cfg = record.config.get("card", {})
    env = record.environment
    ev = record.evaluation
    hp, other = _hyperparameters(record)
    dtype, dname = dataset_ids(record)
    base_id = base_model_id(record)
    # Without a Hub id the base is a local path: shown as the pushed run.json shows it, never absolute.
    base_name = base_id or card_path(record.model.base_model, _run_dir(record))
    return {
        "model_name": md_escape(model_display_name(record)),
        "base_model": md_escape(base_name),
        "base_model_link": f"https://huggingface.co/{base_id}" if base_id else None,
        "trained": record.training is not None,
        "task": record.model.task,
        "task_name": _task_name(record),
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
        "test_used_for_selection": _split_role(record) == "selection",
        "test_split_role": _split_role(record),
        "results": _metric_rows(ev) if ev else [],
        "label_names": [md_escape(n) for n in record.data.label_names],
        "splits": _splits(record),
        "max_length": record.data.max_length,
        "files": [(md_escape(Path(p).name), h[:12]) for p, h in record.data.files.items()],
        "hyperparameters": hp + generation_hyperparameters(record),
        "other_settings": other,
        "epoch_table": _epoch_table(record),
        "stopped_early": bool(record.training and record.training.stopped_early),
        "resumed_from": record.training.resumed_from if record.training else None,
        "best_epoch": fmt(record.training.best_epoch, 2) if record.training and record.training.best_epoch else None,
        "best_metric_name": METRIC_NAMES.get(record.training.metric_for_best_model,
                                             record.training.metric_for_best_model) if record.training else None,
        "best_metric": fmt(record.training.best_metric) if record.training else None,
        "overfitting_note": record.training.overfitting_note if record.training else None,
        "newly_initialized": record.model.newly_initialized[:NEWLY_INITIALIZED_SHOWN],
        "newly_initialized_more": max(0, len(record.model.newly_initialized) - NEWLY_INITIALIZED_SHOWN),
        "model_notes": record.model.notes,
        "num_parameters": f"{record.model.num_parameters / 1e6:.1f}M",
        "architecture": record.model.architecture,
        "trust_remote_code": record.model.trust_remote_code,
        "framework": _framework(record),
        "hardware": {
            "device": env.device, "device_name": env.device_name, "num_devices": env.num_devices,
            "cpu_count": env.cpu_count, "threads": env.torch_threads, "memory_gb": env.memory_gb,
            "platform": env.platform, "python": env.python,
        },
        "git_commit": env.git_commit,
        "stage_seconds": [(k, fmt(v, 1)) for k, v in record.stage_seconds.items()],
        "warnings": [w for w in record.warnings if w not in leakage_warnings(record.data.report)],  # shown above
        "comparison": comparison_context(record.comparison, base_name)
        if record.comparison and record.comparison.task == "text-classification" else None,
        "evaluation_note": _evaluation_note(record),
        "reproduce": perplexity_code(record),
        "data_note": _data_note(record),
        "base_vs_finetuned": _base_vs_finetuned(record),
        "generations": _generations(record),
        "generation_quality": generation_context(record),
        "benchmark": _speed(record),
        "data_report": _data_report(record),
        "leakage": _leakage(record),
        "plots": _plots(record),
        "created_at": record.created_at,
        "cardgen_version": record.cardgen_version,
        "schema_version": record.schema_version,
        "dataset_type": dtype,
        **_experiment_sections(record),
        **_adapter_sections(record, md_escape(base_name)),
        **_provenance(record),
    }


def _framework(record: RunRecord) -> list[tuple[str, str]]:
    """(label, version) of the libraries that made the numbers; peft and bitsandbytes only under an adapter."""
    env = record.environment
    packages = env.packages
    framework = [(label, packages[key]) for key, label in (
        ("transformers", "Transformers"), ("torch", "PyTorch"), ("datasets", "Datasets"),
        ("tokenizers", "Tokenizers"), ("accelerate", "Accelerate"), ("huggingface_hub", "huggingface_hub"),
        ("peft", "PEFT"), ("bitsandbytes", "bitsandbytes"), ("cardgen", "cardgen")) if key in packages
        and (key not in ("peft", "bitsandbytes") or record.adapter is not None)]
    if env.cuda:
        framework.insert(2, ("CUDA", env.cuda))
    return framework


def _experiment_sections(record: RunRecord) -> dict[str, Any]:
    """The Seeds, Hyperparameter search, Verdict, Forgetting check and Environmental impact sections (None each
    when the run has none)."""
    from cardgen.card.energy import energy_context
    from cardgen.card.experiments import seeds_context, sweep_context
    from cardgen.card.forgetting import forgetting_context
    from cardgen.card.verdict import verdict_context

    return {"seeds": seeds_context(record), "sweep": sweep_context(record),
            "verdict": verdict_context(record.verdict), "forgetting": forgetting_context(record),
            "energy": energy_context(record)}


def _adapter_sections(record: RunRecord, base_name: str) -> dict[str, Any]:
    """The Adapter section and the memory options (card/adapter.py)."""
    from cardgen.card.adapter import adapter_context, resources_context

    return {"adapter": adapter_context(record, base_name, _run_dir(record)), "resources": resources_context(record)}


def _provenance(record: RunRecord) -> dict[str, Any]:
    """The inferred settings and Hub commits, the trackers, the evaluation examples (card/provenance.py)."""
    from cardgen.card.provenance import examples_context, setup_context, trackers_context

    return {"setup": setup_context(record), "trackers": trackers_context(record),
            "examples": examples_context(record)}
