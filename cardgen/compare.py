"""Base model versus fine-tuned on exactly the same examples: intervals, paired tests and flips -> Comparison.

Used by ``cardgen run`` (:func:`compare_stage`, which fills ``RunRecord.base_evaluation`` and ``.comparison``) and
by ``cardgen compare BASE FT`` (:func:`compare`). Both models see the same examples, truncated to the same length;
every interval comes from the same seeded bootstrap resamples, so base, fine-tuned and delta are paired.

Honest baselines: a base checkpoint without a trained head for the task (transformers reports the head as newly
initialised, as for any encoder fine-tuned into a classifier) is never evaluated with that random head. The
baseline is then a linear probe: a seeded logistic regression on the frozen base model's mean-pooled features of
the train split. A base that already is a classifier with the same label names is evaluated as it is (zero-shot).

torch, transformers and scikit-learn are imported inside functions, so the card can render from run.json alone.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cardgen.compare_report import shorten
from cardgen.console import NullProgress, Progress
from cardgen.errors import ConfigError, DataError, ModelError
from cardgen.record import (
    Comparison,
    EvaluationRecord,
    FlipExample,
    MetricComparison,
    ProbeRecord,
    RunRecord,
)

if TYPE_CHECKING:
    import pandas as pd

    from cardgen.config import ModelConfig, RunConfig
    from cardgen.data import PreparedData
    from cardgen.models import LoadedModel

FLIP_EXAMPLES = 5  # examples shown each way
POOLING = "masked mean of the last hidden state"
PROBE_MAX_ITER = 2000
MACRO_METRICS = (("accuracy", "Accuracy"), ("f1_macro", "F1 (macro)"), ("precision_macro", "Precision (macro)"),
                 ("recall_macro", "Recall (macro)"))
CLASS_METRICS = (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"))


# ---------------------------------------------------------------------------------------------------------------
# Entry points


def compare_stage(cfg: RunConfig, task: Any, loaded: LoadedModel, data: PreparedData, record: RunRecord,
                  progress: Progress) -> None:
    """The run's comparison stage: evaluate the base model on the run's test examples and compare.

    Fills ``record.base_evaluation`` and ``record.comparison``. Does nothing when there was no training (the
    documented checkpoint is its own base). For the LM and QA tasks the base was evaluated by the task before
    training; this stage adds intervals and paired tests from both evaluations' per-document scores.

    Args:
        cfg: The run's config; ``cfg.model`` is the base checkpoint, ``cfg.compare`` the statistics settings.
        task: The task module.
        loaded: The fine-tuned model (already evaluated into ``record.evaluation``).
        data: The prepared splits; the probe is fitted on ``data.frames["train"]``.
        record: The run record to extend.
        progress: Where to report progress.
    """
    if record.training is None or record.evaluation is None:
        return
    if task.NAME != "text-classification":
        _score_stage(cfg, task, record, progress)
        return
    start = time.perf_counter()
    ev = record.evaluation
    frame = data.frames[ev.split]
    device = _device_of(loaded.model)
    method = base_method(_model_config(cfg), data.label_names, record.model.newly_initialized)
    probe = None
    base_eval = None
    if method == "zero-shot":
        base_eval = _zero_shot(cfg, task, loaded.tokenizer, frame, data.label_names, ev.split, device, progress)
    if base_eval is None:
        method = "linear-probe"
        base_eval, probe = linear_probe(
            cfg.model, cfg, loaded.tokenizer, data.frames.get("train"), frame, data.label_names, split=ev.split,
            max_train=cfg.compare.probe_max_train, seed=cfg.compare.seed, batch_size=cfg.evaluation.batch_size,
            device=device, progress=progress,
        )
    record.base_evaluation = base_eval
    c = cfg.compare
    record.comparison = classification_comparison(
        ev.labels, base_eval.predictions, ev.predictions, data.label_names, texts=_texts(frame), split=ev.split,
        base_model=cfg.model.name_or_path, fine_tuned_model=_run_name(cfg), method=method,
        n_resamples=c.bootstrap_samples, confidence=c.confidence, seed=c.seed, probe=probe,
        max_length=data.record.max_length,
    )
    record.comparison.seconds = round(time.perf_counter() - start, 2)


def _score_stage(cfg: RunConfig, task: Any, record: RunRecord, progress: Progress) -> None:
    """LM and QA tasks: intervals and paired tests from the per-document scores both evaluations kept."""
    from cardgen.compare_scores import score_comparison, supports

    base, ev = record.base_evaluation, record.evaluation
    if base is None or ev is None or not supports(task.NAME):
        return
    if not base.extra.get("meaningful", True):
        progress.note("the base model's head is newly initialised: its numbers are shown as not meaningful, "
                      "without intervals or a significance test")
        return
    start = time.perf_counter()
    c = cfg.compare
    record.comparison = score_comparison(task.NAME, base, ev, base_model=cfg.model.name_or_path,
                                         fine_tuned_model=_run_name(cfg), n_resamples=c.bootstrap_samples,
                                         confidence=c.confidence, seed=c.seed)
    record.comparison.seconds = round(time.perf_counter() - start, 2)


def compare(
    base: str,
    fine_tuned: str,
    data: str,
    *,
    task: str = "text-classification",
    split: str = "test",
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    max_length: int | None = None,
    train: str | None = None,
    dataset_config: str | None = None,
    batch_size: int | None = None,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    probe_max_train: int = 20000,
    progress: Progress | None = None,
) -> Comparison:
    """Evaluate two checkpoints on exactly the same examples and compare them with intervals and paired tests.

    Args:
        base: The base checkpoint (directory, Hub id or ``pkg:`` path).
        fine_tuned: The fine-tuned checkpoint, e.g. the output directory of ``cardgen run``.
        data: A data file (csv, tsv, json, jsonl, parquet) or a Hub dataset / saved dataset directory.
        task: ``text-classification`` (probe or zero-shot base, McNemar, flips), or ``causal-lm``, ``masked-lm``,
            ``question-answering`` (both evaluated by the task; intervals and permutation tests over documents;
            the ``lm``/``qa`` settings come from FT's run.json when it has one).
        split: The split to evaluate on (for a file, only its name in the results).
        text_column: Column with the input text.
        label_column: Column with the gold label.
        label_names: Class names in the fine-tuned model's label-id order (default: the model's own names, or
            the sorted labels of the data).
        max_length: Truncation length for both models (default: the one recorded in FT's run.json, else 128).
        train: Training examples for the linear probe, needed when the base has no trained head for the labels
            (default: the dataset's train split, when ``data`` is a dataset).
        dataset_config: Config name of a Hub dataset.
        batch_size: Examples per forward pass (default: the one recorded in FT's run.json, else 32).
        bootstrap_samples: Bootstrap resamples for the intervals (and permutations for the p-values).
        confidence: Coverage of the intervals.
        seed: Seed of the resampling, the permutations and the probe.
        probe_max_train: At most this many training examples fit the probe (a seeded subset).
        progress: Where to report progress (nothing by default).

    Returns:
        The :class:`~cardgen.record.Comparison`, with both models' per-example evaluations attached.

    Raises:
        ConfigError: A setting is out of range or the task is not supported.
        DataError: The data cannot be used (missing file, column or labels; no training examples for a probe).
        ModelError: A checkpoint cannot be loaded, or the fine-tuned one has no head for these labels.
    """
    from cardgen.models import hf_quiet

    with hf_quiet():
        return _compare(base, fine_tuned, data, task=task, split=split, text_column=text_column,
                        label_column=label_column, label_names=label_names, max_length=max_length, train=train,
                        dataset_config=dataset_config, batch_size=batch_size, bootstrap_samples=bootstrap_samples,
                        confidence=confidence, seed=seed, probe_max_train=probe_max_train,
                        progress=progress or NullProgress())


def _compare(base: str, fine_tuned: str, data: str, *, task: str, split: str, text_column: str, label_column: str,
             label_names: Sequence[str] | None, max_length: int | None, train: str | None,
             dataset_config: str | None, batch_size: int | None, bootstrap_samples: int, confidence: float, seed: int,
             probe_max_train: int, progress: Progress) -> Comparison:
    from cardgen.config import TASK_ALIASES, TASKS, load_config, package_path
    from cardgen.models import load_tokenizer, pick_device, resolve_source
    from cardgen.pipeline import _auto_config
    from cardgen.tasks import get_task
    from cardgen.tasks.classification import model_label_names

    start = time.perf_counter()
    task = TASK_ALIASES.get(task, task)
    if task not in TASKS:
        import difflib

        close = difflib.get_close_matches(task, TASKS, n=1, cutoff=0.5)
        raise ConfigError(f"--task must be one of {', '.join(TASKS)} (got {task!r})",
                          f"did you mean --task {close[0]}?" if close else "pass one of them")
    _check_settings(bootstrap_samples, confidence, batch_size, probe_max_train, max_length)
    fine_tuned = package_path(fine_tuned) if fine_tuned.startswith("pkg:") else fine_tuned
    recorded = _recorded_run(fine_tuned)
    recorded_length, recorded_batch = _recorded_settings(recorded)
    max_length = max_length or recorded_length or 128
    batch_size = batch_size or recorded_batch or 32
    data_section: dict[str, Any] = {"text_column": text_column, "label_column": label_column,
                                    "max_length": max_length, "name": Path(data).name}
    if label_names:
        data_section["label_names"] = list(label_names)
    if Path(data).expanduser().is_file():
        data_section["test"] = data
    elif Path(data).suffix.lower() in (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt") or data.startswith(
            (".", "/", "~")) and not Path(data).expanduser().is_dir():
        raise DataError(f"data file {data} does not exist", "check --data (a file, or a Hub dataset name)")
    else:
        data_section.update({"dataset": data, "dataset_config": dataset_config, "splits": {"test": split}})
    if train:
        if not Path(train).expanduser().is_file():
            raise DataError(f"training file {train} does not exist", "check --train")
        data_section["train"] = train
    if task != "text-classification":
        from cardgen.compare_scores import compare_checkpoints

        for key in ("label_column", "label_names"):
            data_section.pop(key, None)
        comparison = compare_checkpoints(base, fine_tuned, data_section, task=task, split=split,
                                         batch_size=batch_size, sections=_recorded_sections(recorded, task),
                                         n_resamples=bootstrap_samples, confidence=confidence, seed=seed,
                                         progress=progress)
        comparison.seconds = round(time.perf_counter() - start, 2)
        return comparison
    cfg = load_config(data={
        "model": {"name_or_path": base}, "task": task, "data": data_section, "training": None,
        "evaluation": {"split": "test", "batch_size": batch_size},
        "compare": {"bootstrap_samples": bootstrap_samples, "confidence": confidence, "seed": seed,
                    "probe_max_train": probe_max_train},
        "benchmark": {"enabled": False},
    })
    ft_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name_or_path=fine_tuned))
    tasks = get_task(task)
    device = pick_device()

    ft_config = _auto_config(ft_cfg)
    base_config = _auto_config(cfg)
    base_tok = load_tokenizer(cfg.model, *resolve_source(cfg.model))
    ft_tok = load_tokenizer(ft_cfg.model, *resolve_source(ft_cfg.model))
    prepared = tasks.prepare_data(cfg, base_tok, False, ft_config)
    names = prepared.label_names
    ft_names = model_label_names(ft_config)
    if ft_names is not None and ft_names != names:
        raise ModelError(f"the fine-tuned model's labels [{', '.join(ft_names)}] differ from the label names "
                         f"[{', '.join(names)}]",
                         f"pass --label-names in the model's order ({','.join(ft_names)}) if the data uses them")
    if ft_names is None and getattr(ft_config, "num_labels", len(names)) != len(names):
        raise ModelError(f"the fine-tuned model has {ft_config.num_labels} labels, the data {len(names)}",
                         "compare on data with the labels the model was fine-tuned on")
    frame = prepared.frames["test"]
    train_frame = prepared.frames.get("train")
    method = base_method(base_config, names)
    if method == "linear-probe" and train_frame is None:
        raise _needs_train(base)

    ft_loaded = tasks.load_model(ft_cfg, names, tokenizer=ft_tok)
    head = [k for k in ft_loaded.newly_initialized if not _is_backbone_only(k)]
    if head:
        raise ModelError(f"{fine_tuned} has no trained classification head for these {len(names)} labels "
                         f"(transformers initialised {', '.join(head[:3])} fresh)",
                         "give a fine-tuned classifier (e.g. the output directory of `cardgen run`) as FT")
    ft_loaded.model.to(device)
    ft_eval = tasks.evaluate(ft_loaded, frame, ft_cfg, names, "fine-tuned", split, progress)
    del ft_loaded

    probe = None
    base_eval = None
    if method == "zero-shot":
        base_eval = _zero_shot(cfg, tasks, base_tok, frame, names, split, device, progress)
    if base_eval is None:
        method = "linear-probe"
        if train_frame is None:
            raise _needs_train(base)
        base_eval, probe = linear_probe(cfg.model, cfg, base_tok, train_frame, frame, names, split=split,
                                        max_train=probe_max_train, seed=seed, batch_size=batch_size, device=device,
                                        progress=progress)
    comparison = classification_comparison(
        ft_eval.labels, base_eval.predictions, ft_eval.predictions, names, texts=_texts(frame), split=split,
        base_model=base, fine_tuned_model=fine_tuned, method=method, n_resamples=bootstrap_samples,
        confidence=confidence, seed=seed, probe=probe, max_length=prepared.record.max_length,
    )
    comparison.base_evaluation = base_eval
    comparison.fine_tuned_evaluation = ft_eval
    comparison.seconds = round(time.perf_counter() - start, 2)
    return comparison


def _needs_train(base: str) -> DataError:
    return DataError(f"{base} has no trained head for these labels, so the baseline is a linear probe on its "
                     "frozen features, which needs training examples",
                     "give --train FILE (e.g. the train split the model was fine-tuned on)")


def _check_settings(bootstrap_samples: int, confidence: float, batch_size: int | None, probe_max_train: int,
                    max_length: int | None) -> None:
    if bootstrap_samples < 100:
        raise ConfigError(f"--bootstrap must be >= 100 (got {bootstrap_samples})", "use e.g. --bootstrap 1000")
    if not 0.5 < confidence < 1:
        raise ConfigError(f"confidence must be in (0.5, 1) (got {confidence})")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1 (got {batch_size})")
    if probe_max_train < 1:
        raise ConfigError(f"probe_max_train must be >= 1 (got {probe_max_train})")
    if max_length is not None and max_length < 8:
        raise ConfigError(f"--max-length must be >= 8 (got {max_length})")


def _recorded_run(path: str) -> dict[str, Any]:
    """run.json of a `cardgen run` output directory, or {} when ``path`` is not one (or the file is unreadable)."""
    import json

    try:
        raw = json.loads((Path(path).expanduser() / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _recorded_settings(run: dict[str, Any]) -> tuple[int | None, int | None]:
    """(truncation length, evaluation batch size) of the run, so compare matches it.

    The batch size matters only in the last bits (padding widths change the float arithmetic), but matching it
    makes `cardgen compare` reproduce the run's comparison exactly.
    """
    max_length = (run.get("data") or {}).get("max_length")
    batch_size = ((run.get("config") or {}).get("evaluation") or {}).get("batch_size")
    return (max_length if isinstance(max_length, int) else None,
            batch_size if isinstance(batch_size, int) else None)


def _recorded_sections(run: dict[str, Any], task: str) -> dict[str, Any]:
    """The run's ``lm`` / ``qa`` sections when it had the same task: windows, stride, masks and QA settings, so both
    checkpoints are evaluated as that run evaluated them."""
    config = run.get("config") or {}
    if not isinstance(config, dict) or config.get("task") != task:
        return {}
    return {key: config[key] for key in ("lm", "qa") if isinstance(config.get(key), dict)}


def _is_backbone_only(key: str) -> bool:
    # A pooler that a checkpoint never had is harmless for classifiers that do not use it.
    return ".pooler." in f".{key}"


# ---------------------------------------------------------------------------------------------------------------
# The base model: zero-shot or linear probe


def base_method(model_config: Any, label_names: Sequence[str], newly_initialized: Sequence[str] = ()) -> str:
    """``"zero-shot"`` when the base already is a classifier with these label names, else ``"linear-probe"``.

    Args:
        model_config: The base checkpoint's transformers config (None when unknown).
        label_names: The task's label names, in id order.
        newly_initialized: Weights transformers initialised fresh when the base was loaded for the task; any
            such weight means the head is random, and a random head is never "the base model".
    """
    from cardgen.tasks.classification import model_label_names

    if any(not _is_backbone_only(k) for k in newly_initialized):
        return "linear-probe"
    names = model_label_names(model_config) if model_config is not None else None
    return "zero-shot" if names is not None and names == list(label_names) else "linear-probe"


def _zero_shot(cfg: RunConfig, task: Any, tokenizer: Any, frame: pd.DataFrame, label_names: list[str], split: str,
               device: Any, progress: Progress) -> EvaluationRecord | None:
    """The base classifier evaluated as it is; None when its head turns out not to be trained for these labels."""
    base = task.load_model(cfg, label_names, tokenizer=tokenizer)
    if any(not _is_backbone_only(k) for k in base.newly_initialized):
        return None
    base.model.to(device)
    evaluation: EvaluationRecord = task.evaluate(base, frame, cfg, label_names, "base", split, progress)
    evaluation.method = "zero-shot"
    return evaluation


def _pool_step(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return {"features": (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)}


def pooled_features(model: Any, tokenizer: Any, frame: pd.DataFrame, cfg: RunConfig, batch_size: int,
                    progress: Progress | None = None, description: str = "Extracting features") -> np.ndarray:
    """Masked mean of the last hidden state per example, via the evaluation engine (sorted batches).

    Inputs are tokenised and truncated exactly as for evaluation (``cfg.data.max_length``).
    """
    from cardgen.engine import run_engine
    from cardgen.tasks.classification import encode

    features = encode(frame, tokenizer, cfg)
    result = run_engine(model, features, _pool_step, batch_size=batch_size,
                        pad_token_id=tokenizer.pad_token_id or 0, progress=progress, description=description)
    return np.asarray(result.outputs["features"], dtype=np.float64)


def linear_probe(model_cfg: ModelConfig, cfg: RunConfig, tokenizer: Any, train_frame: pd.DataFrame | None,
                 eval_frame: pd.DataFrame, label_names: list[str], *, split: str, max_train: int, seed: int,
                 batch_size: int, device: Any = None, progress: Progress | None = None,
                 ) -> tuple[EvaluationRecord, ProbeRecord]:
    """Logistic regression on the frozen base model's pooled features: the honest baseline for a new head.

    Args:
        model_cfg: The base checkpoint.
        cfg: Gives the truncation length (``cfg.data.max_length``).
        tokenizer: The base model's tokenizer.
        train_frame: Examples to fit the probe on (``text``, ``label`` columns); at most ``max_train`` of them, a
            seeded subset.
        eval_frame: The evaluation examples.
        label_names: Class names in id order.
        split: Name of the evaluation split, for the record.
        max_train: Most training examples to use.
        seed: Seed of the subset and of the classifier.
        batch_size: Examples per forward pass.
        device: Where the base model runs (default: where it loads).
        progress: Where to report progress.

    Returns:
        The base model's evaluation (method ``"linear-probe"``, per-example predictions and log-losses) and how
        the probe was fitted.

    Raises:
        DataError: No training examples, or a single class among them.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoModel

    from cardgen.data import subsample
    from cardgen.models import load_pretrained
    from cardgen.stats.metrics import classification_metrics

    if train_frame is None or len(train_frame) == 0:
        raise DataError("the linear-probe baseline needs training examples and there are none",
                        "give training data (data.train, or --train FILE)")
    train_frame = subsample(train_frame, max_train, seed)
    y_train = np.asarray(train_frame["label"].tolist(), dtype=np.int64)
    if len(np.unique(y_train)) < 2:
        raise DataError("the linear-probe baseline needs training examples of at least two labels",
                        "give more varied training data")
    start = time.perf_counter()
    base = load_pretrained(AutoModel, model_cfg, tokenizer=tokenizer)
    if device is not None:
        base.model.to(device)
    x_train = pooled_features(base.model, tokenizer, train_frame, cfg, batch_size, progress,
                              "Base features (probe train)")
    eval_start = time.perf_counter()
    x_eval = pooled_features(base.model, tokenizer, eval_frame, cfg, batch_size, progress,
                             f"Base features ({split})")
    eval_seconds = time.perf_counter() - eval_start
    del base
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER, random_state=seed))
    clf.fit(x_train, y_train)
    k = len(label_names)
    proba = np.zeros((len(x_eval), k))
    proba[:, clf.classes_] = clf.predict_proba(x_eval)
    labels = [int(v) for v in eval_frame["label"].tolist()]
    preds = proba.argmax(axis=1).tolist()
    losses = -np.log(np.clip(proba[np.arange(len(labels)), labels], 1e-12, None))
    metrics = classification_metrics(labels, preds, k)
    metrics["loss"] = float(losses.mean())
    evaluation = EvaluationRecord(
        model="base", split=split, num_examples=len(labels), metrics=metrics, labels=labels, predictions=preds,
        losses=[round(float(x), 6) for x in losses], method="linear-probe", runtime_s=round(eval_seconds, 3),
        extra={"probe_train_examples": len(y_train)},
    )
    probe = ProbeRecord(
        features=POOLING, feature_dim=int(x_train.shape[1]),
        classifier=f"StandardScaler + LogisticRegression(C=1.0, lbfgs, max_iter={PROBE_MAX_ITER})",
        train_split="train", num_train=len(y_train),
        train_accuracy=float(np.mean(clf.predict(x_train) == y_train)), seed=seed,
        seconds=round(time.perf_counter() - start, 2),
    )
    return evaluation, probe


# ---------------------------------------------------------------------------------------------------------------
# Statistics


def _class_metric(kind: str, cls: int, num_labels: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Batched precision/recall/F1 of one class ((B, n) arrays -> (B,)), zero where undefined like sklearn."""
    from cardgen.stats.metrics import batched_confusion

    def fn(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        cm = batched_confusion(np.atleast_2d(labels), np.atleast_2d(predictions), num_labels)
        tp = cm[:, cls, cls].astype(float)
        gold = cm[:, cls, :].sum(axis=-1).astype(float)
        pred = cm[:, :, cls].sum(axis=-1).astype(float)
        denom = {"precision": pred, "recall": gold, "f1": gold + pred}[kind]
        num = 2.0 * tp if kind == "f1" else tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), 0.0)

    return fn


def _macro_metric(kind: str, num_labels: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    parts = [_class_metric(kind, i, num_labels) for i in range(num_labels)]

    def fn(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        return np.mean([p(labels, predictions) for p in parts], axis=0)

    return fn


def _delta_of(metric: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def fn(labels: np.ndarray, base: np.ndarray, ft: np.ndarray) -> np.ndarray:
        return np.asarray(metric(labels, ft), dtype=float) - np.asarray(metric(labels, base), dtype=float)

    return fn


def classification_comparison(
    labels: Sequence[int],
    base_predictions: Sequence[int],
    ft_predictions: Sequence[int],
    label_names: Sequence[str],
    *,
    texts: Sequence[str],
    split: str,
    base_model: str,
    fine_tuned_model: str,
    method: str,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    n_permutations: int | None = None,
    probe: ProbeRecord | None = None,
    max_length: int | None = None,
) -> Comparison:
    """Intervals, deltas, paired tests and flips of two models' predictions on the same examples.

    Every interval is a percentile bootstrap over examples with ``seed``: the same resampled examples for the
    base, the fine-tuned model and their delta. Accuracy is tested with the exact McNemar test, the macro
    metrics with a paired permutation test (``n_permutations``, default ``n_resamples``).

    Args:
        labels: Gold label ids.
        base_predictions: The base model's predicted ids, same order.
        ft_predictions: The fine-tuned model's predicted ids, same order.
        label_names: Class names in id order.
        texts: The examples' texts (for the flip examples).
        split: Name of the evaluation split.
        base_model: What the base is (name or path).
        fine_tuned_model: What the fine-tuned model is.
        method: How the base was evaluated (``"linear-probe"`` or ``"zero-shot"``).
        n_resamples: Bootstrap resamples.
        confidence: Coverage of the intervals.
        seed: Seed of the resampling and permutations.
        n_permutations: Permutations behind the permutation p-values.
        probe: How the probe was fitted, when the base is a linear probe.
        max_length: The truncation length both models used.
    """
    from cardgen.stats.intervals import BOOTSTRAP_METHOD, bootstrap_ci, classification_intervals
    from cardgen.stats.metrics import batched_accuracy
    from cardgen.stats.paired import flips, mcnemar_exact, paired_bootstrap_test

    y = np.asarray(labels, dtype=np.int64)
    a = np.asarray(base_predictions, dtype=np.int64)
    b = np.asarray(ft_predictions, dtype=np.int64)
    if not (len(y) == len(a) == len(b) == len(texts)):
        raise DataError(f"the two models were evaluated on different numbers of examples ({len(a)} and {len(b)})",
                        "evaluate both on the same split")
    names = [str(n) for n in label_names]
    k = len(names)
    n_perm = n_permutations or n_resamples
    kw: dict[str, Any] = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    base_iv = classification_intervals(y, a, k, names, **kw)
    ft_iv = classification_intervals(y, b, k, names, **kw)

    def trio(iv: Any) -> list[float]:
        return [float(iv.point), float(iv.low), float(iv.high)]

    rows: list[MetricComparison] = []
    mcnemar = mcnemar_exact(a == y, b == y)
    acc_delta = bootstrap_ci(_delta_of(batched_accuracy), y, a, b, **kw)
    rows.append(MetricComparison("accuracy", "Accuracy", trio(base_iv.accuracy), trio(ft_iv.accuracy),
                                 trio(acc_delta), mcnemar.p_value, mcnemar.test))
    for key, name in MACRO_METRICS[1:]:
        kind = key.split("_")[0]
        test = paired_bootstrap_test(_macro_metric(kind, k), y, a, b, n_resamples=n_resamples, seed=seed,
                                     confidence=confidence, n_permutations=n_perm)
        rows.append(MetricComparison(key, name, trio(getattr(base_iv, key)), trio(getattr(ft_iv, key)),
                                     [test.delta, test.low, test.high], test.p_value,
                                     f"{test.test}, {test.n_permutations} permutations"))
    per_class: list[MetricComparison] = []
    for i, label in enumerate(names):
        for kind, name in CLASS_METRICS:
            delta = bootstrap_ci(_delta_of(_class_metric(kind, i, k)), y, a, b, **kw)
            per_class.append(MetricComparison(
                kind, name, trio(getattr(base_iv.per_class[label], kind)), trio(getattr(ft_iv.per_class[label], kind)),
                trio(delta), label=label, support=base_iv.per_class[label].support,
            ))
    wrong_to_right, right_to_wrong = flips(y, a, b)

    def examples(indices: list[int]) -> list[FlipExample]:
        return [FlipExample(index=i, text=shorten(texts[i]), label=names[y[i]], base_prediction=names[a[i]],
                            fine_tuned_prediction=names[b[i]]) for i in indices[:FLIP_EXAMPLES]]

    by_key = {r.key: r for r in rows}
    summary: dict[str, Any] = {"method": method, "num_examples": int(len(y))}
    for key in ("accuracy", "f1_macro"):
        r = by_key[key]
        summary[key] = {"base": r.base[0], "fine_tuned": r.fine_tuned[0], "delta": r.delta[0],
                        "delta_low": r.delta[1], "delta_high": r.delta[2], "p_value": r.p_value}
    summary["wrong_to_right"] = len(wrong_to_right)
    summary["right_to_wrong"] = len(right_to_wrong)
    return Comparison(
        task="text-classification", split=split, num_examples=int(len(y)), base_model=base_model,
        fine_tuned_model=fine_tuned_model, method=method, confidence=confidence, bootstrap_samples=n_resamples,
        permutations=n_perm, seed=seed, interval_method=BOOTSTRAP_METHOD, metrics=rows, per_class=per_class,
        tests={r.key: r.test or "" for r in rows}, wrong_to_right=len(wrong_to_right),
        right_to_wrong=len(right_to_wrong), wrong_to_right_examples=examples(wrong_to_right),
        right_to_wrong_examples=examples(right_to_wrong), probe=probe, max_length=max_length, summary=summary,
    )


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def _texts(frame: pd.DataFrame) -> list[str]:
    texts = [str(t) for t in frame["text"].tolist()]
    if "text_pair" in frame:
        texts = [f"{t} / {p}" for t, p in zip(texts, frame["text_pair"].tolist(), strict=True)]
    return texts


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def _model_config(cfg: RunConfig) -> Any:
    from cardgen.pipeline import _auto_config

    return _auto_config(cfg)


def _run_name(cfg: RunConfig) -> str:
    return str(cfg.card.model_name or Path(cfg.output.dir).name)


__all__ = [
    "base_method",
    "classification_comparison",
    "compare",
    "compare_stage",
    "linear_probe",
]
