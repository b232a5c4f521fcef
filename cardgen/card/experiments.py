"""The card's "Seeds" and "Hyperparameter search" sections, built from ``record.experiments`` alone.

Seeds: one row per seed, each test metric as mean ± std with the t interval of the mean, and the base ->
fine-tuned change set against the seed spread, so a gain smaller than what reseeding alone moves is called
what it is. Sweep: the space, every trial (pruned and failed ones too) and which trial's checkpoint is kept.
"""

from __future__ import annotations

from typing import Any

from cardgen.card.format import fmt, md_escape
from cardgen.record import RunRecord, SeedsRecord, SpreadStats, SweepRecord
from cardgen.stats.metrics import LOWER_IS_BETTER, METRIC_NAMES

SEED_TABLE_METRICS = 4  # test metrics shown per seed row (all of them are in run.json)


def _name(key: str) -> str:
    return METRIC_NAMES.get(key, key)


def _pm(s: SpreadStats) -> str:
    return f"{fmt(s.mean)} ± {fmt(s.std)}" if s.std is not None else fmt(s.mean)


def base_values(record: RunRecord) -> dict[str, float]:
    """The base model's test value of each metric, where the run measured a meaningful one."""
    if record.comparison is not None and record.comparison.metrics:
        return {m.key: m.base[0] for m in record.comparison.metrics if m.label is None}
    base = record.base_evaluation
    if base is None or not base.extra.get("meaningful", True):
        return {}
    return dict(base.metrics)


def against_spread(key: str, base: float, s: SpreadStats) -> dict[str, str]:
    """The base -> fine-tuned change of one metric (the seeds' mean minus the base) against the seed spread."""
    delta = s.mean - base
    better = delta < 0 if key in LOWER_IS_BETTER else delta > 0
    word = "gain" if better else ("change" if delta == 0 else "loss")
    row = {"name": _name(key), "base": fmt(base), "mean": _pm(s), "delta": ("+" if delta > 0 else "") + fmt(delta)}
    if not s.std:
        row["verdict"] = ("every seed gave the same value: no spread to weigh the change against"
                          if s.std == 0 else "one seed: no spread")
        return row
    ratio = abs(delta) / s.std
    if ratio < 1:
        row["verdict"] = f"smaller than the seed spread ({ratio:.1f} seed standard deviations): not decisive"
        return row
    assert s.low is not None and s.high is not None
    low, high = s.low - base, s.high - base
    level = f"{s.confidence * 100:g}%"
    interval = f"[{'+' if low > 0 else ''}{fmt(low)}, {'+' if high > 0 else ''}{fmt(high)}]"
    if low <= 0 <= high:
        tail = f"its {level} interval over seeds {interval} includes 0: not decisive"
    else:
        tail = f"its {level} interval over seeds {interval} excludes 0"
    row["verdict"] = f"the {word} is {ratio:.1f} seed standard deviations; {tail}"
    return row


def seeds_context(record: RunRecord) -> dict[str, Any] | None:
    """The "Seeds" section (None without seeds)."""
    seeds: SeedsRecord | None = record.experiments.seeds if record.experiments else None
    if seeds is None or not seeds.runs:
        return None
    keys = [k for k in METRIC_NAMES if k in seeds.test][:SEED_TABLE_METRICS]
    keys += [k for k in seeds.test if k not in keys][: max(0, SEED_TABLE_METRICS - len(keys))]
    metric = _name(seeds.metric)
    header = ["Seed", "Best epoch", f"Validation {metric}"] + [f"{seeds.split.capitalize()} {_name(k)}" for k in keys]
    rows = []
    for run in seeds.runs:
        cells = [str(run.seed), fmt(run.best_epoch, 2), fmt(run.validation_metric)]
        cells += [fmt(run.test_metrics.get(k)) for k in keys]
        if run.seed == seeds.kept_seed:
            cells = [f"**{c}**" for c in cells]
        rows.append(cells)
    summary = [{"name": _name(k), "mean": _pm(s), "interval": f"[{fmt(s.low)}, {fmt(s.high)}]",
                "range": f"{fmt(s.minimum)} – {fmt(s.maximum)}"} for k, s in seeds.test.items()]
    base = base_values(record)
    spread_rows = [against_spread(k, base[k], s) for k, s in seeds.test.items() if k in base]
    kept = next((r for r in seeds.runs if r.seed == seeds.kept_seed), None)
    finished = len(seeds.runs)
    return {
        "n": finished, "planned": len(seeds.seeds), "seeds": ", ".join(map(str, seeds.seeds)),
        "split": seeds.split, "metric": metric, "header": header, "rows": rows, "summary": summary,
        "confidence": f"{(next(iter(seeds.test.values())).confidence if seeds.test else 0.95) * 100:g}%",
        "against_spread": spread_rows,
        "kept": (f"The model saved and documented in this card is seed {kept.seed}'s (the bold row): the best of "
                 f"the {finished} seeds by validation {metric} ({fmt(kept.validation_metric)}), never by its "
                 f"{seeds.split} score. The comparison with the base model and the speed benchmark ran once, on "
                 "that model.") if kept else None,
    }


def _range(entry: Any) -> str:
    if entry.type == "categorical":
        return ", ".join(md_escape(c) for c in entry.choices)
    text = f"[{entry.low:g}, {entry.high:g}]"
    if entry.step:
        text += f", step {entry.step:g}"
    if entry.log:
        text += ", log scale"
    return text


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return md_escape(value)


def _trial_row(t: Any, keys: list[str], best: int | None, kept: int | None) -> list[str]:
    values = [f"{k}: {fmt(v)}" for k, v in t.values.items()]
    state = t.state
    if state == "pruned" and t.values:
        state = f"pruned after evaluation {max(int(k) for k in t.values)}"
    elif t.note and state in ("failed", "waiting", "running"):
        state = f"{state} ({md_escape(t.note)})"
    if t.retry_of is not None:
        state += f"; re-runs trial {t.retry_of}" + (f" from its `{t.resumed_from}`" if t.resumed_from else "")
    cells = [str(t.number), state] + [_value(t.params.get(k)) if k in t.params else "—" for k in keys]
    cells += [fmt(t.objective), fmt(t.best_epoch, 2) if t.best_epoch is not None else "—",
              "; ".join(values) or "—", fmt(t.seconds, 1)]
    if t.number == best and t.number == kept:
        cells = [f"**{c}**" for c in cells]
    return cells


def sweep_context(record: RunRecord) -> dict[str, Any] | None:
    """The "Hyperparameter search" section (None without a sweep)."""
    sw: SweepRecord | None = record.experiments.sweep if record.experiments else None
    if sw is None:
        return None
    keys = [e.key for e in sw.space]
    metric = _name(sw.metric)
    counts: dict[str, int] = {}
    for t in sw.trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    header = ["Trial", "State"] + [f"`{k}`" for k in keys] + [
        f"Objective: best validation {metric}", "Best epoch", f"Validation {metric} per evaluation", "Seconds"]
    best = next((t for t in sw.trials if t.number == sw.best_trial), None)
    kept = next((t for t in sw.trials if t.number == sw.kept_trial), None)
    if kept is not None and sw.kept_trial == sw.best_trial:
        kept_text = (f"The model documented in this card is trial {kept.number}'s best epoch (epoch "
                     f"{fmt(kept.best_epoch, 2)}, validation {metric} {fmt(kept.objective)}): the best trial of the "
                     "study (the bold row), its checkpoint kept as it was at that epoch.")
    elif kept is not None:
        kept_text = (f"The model documented in this card is trial {kept.number}'s best epoch, the best trial this "
                     f"worker ran; the study's best trial is {sw.best_trial}, run by {md_escape(sw.kept_elsewhere)}, "
                     "whose output directory holds that model.")
    else:
        kept_text = None
    seeds = (f"Its settings were then trained again on {sw.then_seeds} seeds (see *Seeds*); the model kept is the "
             "seed best on validation.") if sw.then_seeds and record.experiments and record.experiments.seeds else None
    return {
        "study": md_escape(sw.study_name), "storage": md_escape(sw.storage), "metric": metric,
        "direction": sw.direction, "sampler": md_escape(sw.sampler), "pruner": md_escape(sw.pruner),
        "requested": sw.trials_requested, "counts": ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        "space": [{"key": k.key, "type": k.type, "range": _range(k)} for k in sw.space],
        "header": header, "rows": [_trial_row(t, keys, sw.best_trial, sw.kept_trial) for t in sw.trials],
        "best": best.number if best else None, "kept": kept_text, "then_seeds": seeds,
        "seconds": fmt(sw.seconds, 0) if sw.seconds is not None else None,
    }
