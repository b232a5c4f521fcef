"""Plots beside the card: training curves, confusion matrix, latency of base vs fine-tuned.

Every plot is a pure function of the run record, drawn with matplotlib's object-oriented API on an Agg canvas
(no pyplot, no global backend switch, nothing shown on screen) and written atomically as PNG into the output
directory. :func:`write_plots` records which plots exist in ``record.extras["plots"]``, so the card links them by
relative path and ``cardgen push`` uploads them with it. matplotlib is imported inside the functions.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from cardgen.record import RunRecord

CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
LATENCY_FILE = "latency.png"
SWEEP_FILE = "sweep_objective.png"
PLOT_FILES = (CURVES_FILE, CONFUSION_FILE, LATENCY_FILE, SWEEP_FILE)
CURVES_TITLE = "Training loss per step and learning rate; validation loss and metric per epoch"
DPI = 110
METRIC_LABELS = {"accuracy": "Accuracy", "f1_macro": "F1 (macro)", "precision_macro": "Precision (macro)",
                 "recall_macro": "Recall (macro)", "f1_positive": "F1 (positive class)", "loss": "Loss",
                 "perplexity": "Perplexity", "exact_match": "Exact match", "f1": "F1"}
MODEL_ORDER = ("base", "fine-tuned")


def write_plots(record: RunRecord, out_dir: str | Path) -> list[dict[str, str]]:
    """Draw every plot the record has data for, write the PNGs into ``out_dir`` and list them in the record.

    Plot files of an earlier run that this record no longer has data for are removed, so the directory and
    ``record.extras["plots"]`` always agree.

    Args:
        record: The run record (read; ``extras["plots"]`` is set).
        out_dir: The run's output directory, where README.md lives.

    Returns:
        One ``{"name", "file", "title"}`` entry per plot written, ``file`` relative to ``out_dir``.
    """
    from cardgen.files import atomic_write_bytes

    out_dir = Path(out_dir)
    plots: list[dict[str, str]] = []
    for name, file, title, draw in (
        ("training_curves", CURVES_FILE, CURVES_TITLE, training_curves),
        ("confusion_matrix", CONFUSION_FILE, "Confusion matrix on the evaluation split", confusion_matrix),
        ("latency", LATENCY_FILE, "Latency of the base and the fine-tuned model", latency_chart),
        ("sweep_objective", SWEEP_FILE, "Hyperparameter search: each trial's objective", sweep_objective),
    ):
        fig = draw(record)
        if fig is None:
            (out_dir / file).unlink(missing_ok=True)
            continue
        atomic_write_bytes(out_dir / file, png_bytes(fig))
        plots.append({"name": name, "file": file, "title": title})
    record.extras["plots"] = plots
    return plots


def png_bytes(fig: Any) -> bytes:
    """A figure as PNG bytes (Agg), without the matplotlib version in the metadata so reruns compare equal."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _metric_label(key: str) -> str:
    return METRIC_LABELS.get(key, key.replace("_", " "))


def main_metric(record: RunRecord) -> str | None:
    """The metric the per-epoch plot shows: the one that picked the best epoch, else the first one logged."""
    tr = record.training
    if tr is None:
        return None
    logged = [k for row in tr.epochs for k in row.metrics]
    if tr.metric_for_best_model != "loss" and tr.metric_for_best_model in logged:
        return tr.metric_for_best_model
    for key in ("accuracy", "f1_macro", "perplexity", "f1", "exact_match"):
        if key in logged:
            return key
    return logged[0] if logged else None


def training_curves(record: RunRecord) -> Any:
    """Training loss at every logged step with the learning rate on a second axis, validation loss per epoch and,
    beside it, the main validation metric; None without rows."""
    tr = record.training
    if tr is None or not tr.epochs:
        return None
    rows = tr.epochs
    metric = main_metric(record)
    fig = _figure(9.0 if metric else 5.0, 3.6)
    axes = fig.subplots(1, 2 if metric else 1, squeeze=False)[0]
    ax = axes[0]
    best = next((r for r in rows if tr.best_step is not None and r.step == tr.best_step), None)
    _loss_panel(ax, record, best)
    if metric:
        ax = axes[1]
        points = [(r.epoch, r.metrics[metric]) for r in rows if metric in r.metrics]
        ax.plot(*zip(*points, strict=True), marker="o", color="#2ca02c", label="validation")
        if best is not None and metric in best.metrics:
            ax.plot([best.epoch], [best.metrics[metric]], marker="*", markersize=14, color="#d62728",
                    linestyle="none", label=f"best ({best.metrics[metric]:.4f})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(_metric_label(metric))
        ax.set_title(f"Validation {_metric_label(metric)}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        if len(rows) <= 12:
            ax.set_xticks(sorted({r.epoch for r in rows}))
    return fig


def sweep_objective(record: RunRecord) -> Any:
    """A sweep's trials in order: each complete trial's objective (its best epoch's validation metric), each
    pruned trial's last reported value, and the best so far; None without a sweep."""
    sweep = record.experiments.sweep if record.experiments else None
    if sweep is None or not sweep.trials:
        return None
    fig = _figure(6.5, 3.6)
    ax = fig.subplots()
    done = [(t.number, t.objective) for t in sweep.trials if t.state == "complete" and t.objective is not None]
    pruned = [(t.number, t.values[max(t.values, key=int)]) for t in sweep.trials if t.state == "pruned" and t.values]
    if done:
        ax.plot(*zip(*done, strict=True), marker="o", linestyle="none", color="#1f77b4", label="complete (best epoch)")
        best_so_far, line = None, []
        for number, value in done:
            if best_so_far is None or (value > best_so_far if sweep.direction == "maximize" else value < best_so_far):
                best_so_far = value
            line.append((number, best_so_far))
        ax.step(*zip(*line, strict=True), where="post", color="#2ca02c", label="best so far")
    if pruned:
        ax.plot(*zip(*pruned, strict=True), marker="x", linestyle="none", color="#7f7f7f",
                label="pruned (last evaluation)")
    best = next((t for t in sweep.trials if t.number == sweep.best_trial), None)
    if best is not None and best.objective is not None:
        ax.plot([best.number], [best.objective], marker="*", markersize=14, color="#d62728", linestyle="none",
                label=f"best trial {best.number} ({best.objective:.4f})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {_metric_label(sweep.metric)}")
    ax.set_title(f"Objective per trial ({sweep.direction})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _loss_panel(ax: Any, record: RunRecord, best: Any) -> None:
    """Training loss per logged step (per epoch for records without a curve), validation loss per epoch, the
    learning-rate schedule on a second y axis."""
    tr = record.training
    assert tr is not None
    rows = tr.epochs
    curve = tr.curve
    if curve:
        ax.plot([p.epoch for p in curve], [p.loss for p in curve], marker="." if len(curve) <= 60 else None,
                linewidth=1.2, label=f"training loss ({len(curve)} logged steps)", color="#1f77b4")
    else:
        train = [(r.epoch, r.training_loss) for r in rows if r.training_loss is not None]
        if train:
            ax.plot(*zip(*train, strict=True), marker="o", label="training loss", color="#1f77b4")
    valid = [(r.epoch, r.validation_loss) for r in rows if r.validation_loss is not None]
    if valid:
        ax.plot(*zip(*valid, strict=True), marker="s", label="validation loss", color="#ff7f0e")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Loss and learning rate")
    ax.grid(alpha=0.3)
    if best is not None:
        ax.axvline(best.epoch, color="grey", linestyle=":", linewidth=1, label=f"best epoch ({best.epoch:g})")
    handles, labels = ax.get_legend_handles_labels()
    schedule = [(p.epoch, p.learning_rate) for p in curve if p.learning_rate is not None]
    if schedule:
        lr_ax = ax.twinx()
        lr_ax.plot(*zip(*schedule, strict=True), color="#7f7f7f", linestyle="--", linewidth=1,
                   label="learning rate")
        lr_ax.set_ylabel("learning rate")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        more_handles, more_labels = lr_ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, fontsize="small")
    if len(rows) <= 12 and not curve:
        ax.set_xticks(sorted({r.epoch for r in rows}))


def confusion_counts(record: RunRecord) -> tuple[list[str], Any] | None:
    """(label names, counts[gold, predicted]) of the evaluation split; None when not a classification run or
    when the record kept no per-example predictions."""
    import numpy as np

    ev = record.evaluation
    if ev is None or record.model.task != "text-classification" or not ev.labels or not ev.predictions:
        return None
    if len(ev.labels) != len(ev.predictions):
        return None
    n = max(len(record.data.label_names), max(ev.labels + ev.predictions) + 1)
    names = list(record.data.label_names) + [str(i) for i in range(len(record.data.label_names), n)]
    counts = np.zeros((n, n), dtype=int)
    for gold, pred in zip(ev.labels, ev.predictions, strict=True):
        if gold >= 0 and pred >= 0:
            counts[gold, pred] += 1
    return names, counts


def confusion_matrix(record: RunRecord) -> Any:
    """Counts of gold label (rows) by predicted label (columns) on the evaluation split, coloured by the share of
    each gold label; None when :func:`confusion_counts` has nothing."""
    import numpy as np

    found = confusion_counts(record)
    if found is None:
        return None
    ev = record.evaluation
    assert ev is not None
    names, counts = found
    n = len(names)
    side = min(2.2 + 0.6 * n, 12.0)
    fig = _figure(side + 1.2, side)
    ax = fig.subplots()
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the gold label's examples")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{counts[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize="small",
                        color="white" if share[i, j] > 0.6 else "black")
    short = [name if len(name) <= 14 else name[:13] + "…" for name in names]
    ax.set_xticks(range(n), short, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), short)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("gold label")
    ax.set_title(f"{ev.model} on {ev.split} ({len(ev.labels)} examples)")
    return fig


def latency_series(benchmark: Any) -> dict[str, dict[int, tuple[float, float | None]]]:
    """Model name -> batch size -> (median ms per batch, p90 ms or None), read defensively from the record.

    Accepts the benchmark as :mod:`cardgen.bench_record` records it (the ``BenchmarkRecord`` dataclass or its
    JSON form ``{"models": {name: {"batches": [{"batch_size", "latency": {"p50_s", "p90_s", "mean_s"}}]}}}``)
    and a list of model entries with a ``name``; anything else gives an empty result, so an unknown or partial
    benchmark only means no latency plot.
    """
    benchmark = _plain(benchmark)
    if not isinstance(benchmark, dict):
        return {}
    models = benchmark.get("models")
    if isinstance(models, list):
        models = {str(m.get("name", i)): m for i, m in enumerate(models) if isinstance(m, dict)}
    if not isinstance(models, dict):
        return {}
    series: dict[str, dict[int, tuple[float, float | None]]] = {}
    for name, entry in models.items():
        batches = entry.get("batches") if isinstance(entry, dict) else None
        if not isinstance(batches, list):
            continue
        for batch in batches:
            if not isinstance(batch, dict):
                continue
            lat: dict[str, Any] = batch["latency"] if isinstance(batch.get("latency"), dict) else batch
            size = batch.get("batch_size", lat.get("batch_size"))
            mid = lat.get("p50_s", lat.get("mean_s"))
            if not isinstance(size, int) or not isinstance(mid, (int, float)):
                continue
            high = lat.get("p90_s")
            series.setdefault(str(name), {})[size] = (
                float(mid) * 1000, float(high) * 1000 if isinstance(high, (int, float)) else None)
    return {k: v for k, v in series.items() if v}


def _plain(value: Any) -> Any:
    """A benchmark record as plain JSON-like data, whether it is the dataclass or already its dict form."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        from cardgen.record import to_dict

        return to_dict(value)
    return value


def latency_chart(record: RunRecord) -> Any:
    """Grouped bars: median latency per batch of each model at each batch size, whiskers to p90; None when the
    record has no usable benchmark."""
    series = latency_series(record.benchmark)
    if not series:
        return None
    names = sorted(series, key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else len(MODEL_ORDER), m))
    sizes = sorted({b for s in series.values() for b in s})
    fig = _figure(max(5.0, 1.6 + 1.3 * len(sizes) * max(1, len(names)) / 2), 3.8)
    ax = fig.subplots()
    width = 0.8 / len(names)
    colors = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    for k, name in enumerate(names):
        xs, mids, errs = [], [], []
        for i, size in enumerate(sizes):
            if size not in series[name]:
                continue
            mid, high = series[name][size]
            xs.append(i - 0.4 + width * (k + 0.5))
            mids.append(mid)
            errs.append(max(0.0, high - mid) if high is not None else 0.0)
        ax.bar(xs, mids, width=width * 0.95, yerr=[[0.0] * len(errs), errs], capsize=3, label=name,
               color=colors[k % len(colors)])
        for x, mid, err in zip(xs, mids, errs, strict=True):
            ax.annotate(f"{mid:.3g}", (x, mid + err), xytext=(0, 3), textcoords="offset points", ha="center",
                        va="bottom", fontsize="x-small")
    ax.set_xticks(range(len(sizes)), [f"batch {s}" for s in sizes])
    ax.set_ylabel("ms per batch (median, whisker to p90)")
    benchmark = _plain(record.benchmark)
    settings = benchmark.get("settings") if isinstance(benchmark, dict) else None
    where = ""
    if isinstance(settings, dict):
        bits = [str(settings[k]) for k in ("device_name", "device", "precision") if settings.get(k)]
        where = f" ({', '.join(bits[:2])})" if bits else ""
    ax.set_title(f"Forward-pass latency{where}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return fig
