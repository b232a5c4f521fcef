"""cardgen's generation metrics as ``evaluate`` modules, and any other ``evaluate`` metric a config names.

The four folders here are evaluate metric scripts (BLEU, chrF, ROUGE, exact match) that load offline by path::

    import evaluate
    from cardgen.evaluate_metrics import metric_path
    bleu = evaluate.load(str(metric_path("bleu")))      # works with HF_EVALUATE_OFFLINE=1
    bleu.compute(predictions=[...], references=[...])  # {"bleu": ..., "signature": "nrefs:1|case:mixed|..."}

They wrap :mod:`cardgen.stats.text`, which a run calls directly (it needs the per-sentence statistics for the
intervals). ``generation.metrics`` may also name ``evaluate:NAME`` (a Hub metric such as ``evaluate:bertscore``,
fetched only when online, or ``evaluate:/path/to/metric``): it is loaded before anything runs, so offline it fails
at once with one clear error, and its corpus value is recorded without intervals.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cardgen.errors import ConfigError

BUILTIN = {"bleu": "cardgen_bleu", "chrf": "cardgen_chrf", "rouge": "cardgen_rouge",
           "exact_match": "cardgen_exact_match"}
PREFIX = "evaluate:"


def metric_path(name: str) -> Path:
    """The folder of one of cardgen's evaluate metric scripts (``bleu``, ``chrf``, ``rouge``, ``exact_match``)."""
    if name not in BUILTIN:
        raise KeyError(f"cardgen ships no evaluate metric {name!r} (have {', '.join(BUILTIN)})")
    return Path(__file__).resolve().parent / BUILTIN[name]


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
               for k in ("HF_EVALUATE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def load_metric(name: str) -> Any:
    """An evaluate module: one of cardgen's by name, or ``evaluate:NAME`` from a path or the Hub.

    Raises:
        ConfigError: one line when evaluate is missing, or the metric cannot be loaded (offline, unknown).
    """
    try:
        import evaluate
    except ImportError as exc:
        raise ConfigError(f"generation.metrics names {name!r}, which needs the `evaluate` package",
                          "pip install 'cardgen[generation]'") from exc
    target = str(metric_path(name)) if name in BUILTIN else name.removeprefix(PREFIX)
    local = Path(target).expanduser()
    try:
        return evaluate.load(str(local) if local.exists() else target)
    except (FileNotFoundError, ConnectionError, OSError, ValueError, ImportError) as exc:
        where = ("offline (HF_EVALUATE_OFFLINE / HF_HUB_OFFLINE is set)" if _offline()
                 else "not a local metric script, and the Hugging Face Hub has none by that name or cannot be reached")
        if isinstance(exc, ImportError):
            where = f"its script needs a package that is not installed ({str(exc).splitlines()[0][:200]})"
        raise ConfigError(f"cannot load the evaluate metric {target!r} named in generation.metrics: {where}",
                          f"run online once so evaluate can fetch it, give a local script (evaluate:/path/to/metric.py)"
                          f", or remove {name!r} from generation.metrics") from exc


def load_extra_metrics(names: list[str]) -> dict[str, Any]:
    """The ``evaluate:`` metrics of ``generation.metrics``, loaded now (before any training), by their short name
    (``evaluate:bertscore`` -> bertscore, ``evaluate:/path/to/length_ratio.py`` -> length_ratio)."""
    return {Path(name.removeprefix(PREFIX).rstrip("/")).name.removesuffix(".py"): load_metric(name)
            for name in names if name.startswith(PREFIX)}


def scalar_results(result: Any) -> dict[str, float]:
    """The numbers of an evaluate result: scalars as they are, lists of numbers as their mean (e.g. bertscore)."""
    import numpy as np

    out: dict[str, float] = {}
    for key, value in (result or {}).items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[str(key)] = float(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            out[str(key)] = float(np.mean(value))
    return out


def compute_extra(modules: dict[str, Any], predictions: list[str], references: list[str]) -> dict[str, dict[str, float]]:
    """Each extra metric's numbers on the outputs (references as one per prediction)."""
    return {name: scalar_results(module.compute(predictions=predictions, references=references))
            for name, module in modules.items()}
