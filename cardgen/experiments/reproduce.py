"""``cardgen reproduce``: re-run a recorded run and say, metric by metric, whether its numbers hold.

The run comes from a local output directory or a Hub repo holding run.json (and config.yaml). Before anything
runs, the data files are checked against the sha256 the run recorded: a changed row is refused unless the user
allows it. After the re-run (``cardgen reproduce`` runs the pipeline), :func:`drift_report` sets every recorded
metric beside its re-run value with the difference and whether it falls inside the recorded interval, and lists
the versions and hardware that differ. A metric holds when it is within ``tolerance`` (relative above 1), or with
``criterion="interval"`` when it falls inside the recorded interval (a re-run on other hardware).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardgen.errors import DataError, HubError, OutputError
from cardgen.record import Change, DriftRow, ReproduceReport, RunRecord
from cardgen.stats.metrics import METRIC_NAMES

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HARDWARE = ("device", "device_name", "num_devices", "cpu_count", "torch_threads", "memory_gb")
VERSIONS = ("python", "platform", "cuda", "git_commit")


@dataclass
class RunSource:
    """A recorded run: its record and the config it ran with (config.yaml, else the record's own copy)."""

    location: str  # the directory or the Hub repo id
    record: RunRecord
    config: dict[str, Any]
    from_hub: bool = False


def load_source(source: str, revision: str | None = None, token: str | None = None) -> RunSource:
    """The run in ``source``: a local output directory, or a Hub repo id (run.json and config.yaml downloaded).

    Raises:
        OutputError: A local path that is no run directory.
        HubError: The repo, the revision or its run.json cannot be read from the Hub.
    """
    from cardgen.record import load_record

    path = Path(source).expanduser()
    if path.exists() or not REPO_ID.match(source):
        if not (path / "run.json").is_file():
            raise OutputError(f"{source} is not a run directory (no run.json in it)",
                              "give the output directory of a `cardgen run`, or a Hub repo id NS/NAME")
        record = load_record(path)
        return RunSource(str(path), record, _read_config(path / "config.yaml") or record.config)
    run_json, config_yaml = _download(source, revision, token)
    record = load_record(run_json)
    config = (_read_config(config_yaml) if config_yaml else None) or record.config
    return RunSource(source, record, _from_hub_paths(config), from_hub=True)


def _read_config(path: Path) -> dict[str, Any] | None:
    import yaml

    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise OutputError(f"{path} is not valid YAML", "re-run, or remove it to use run.json's config") from exc
    return data if isinstance(data, dict) else None


def _download(repo_id: str, revision: str | None, token: str | None) -> tuple[Path, Path | None]:
    """run.json (required) and config.yaml (if the repo has it) from the Hub, through huggingface_hub's cache."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def fetch(name: str) -> Path:
        return Path(hf_hub_download(repo_id, name, revision=revision, token=token))

    try:
        run_json = fetch("run.json")
        try:
            config = fetch("config.yaml")
        except RemoteEntryNotFoundError:
            config = None
    except RemoteEntryNotFoundError as exc:
        raise HubError(f"{repo_id} has no run.json, so there is no run to reproduce",
                       "push the run with `cardgen push RUN_DIR --repo-id ...`, which uploads run.json") from exc
    except RevisionNotFoundError as exc:
        raise HubError(f"revision {revision!r} not found in {repo_id}", "check --revision") from exc
    except RepositoryNotFoundError as exc:
        raise HubError(f"{repo_id} not found on the Hub or not visible with this token",
                       "check the repo id; pass --token (or set HF_TOKEN) for a private repo") from exc
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise HubError(f"cannot reach the Hub to download {repo_id}'s run.json (offline, or HF_HUB_OFFLINE is set)",
                       "check the network, HF_ENDPOINT and HF_HUB_OFFLINE, or reproduce from a local run directory"
                       ) from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise HubError(f"cannot download run.json from {repo_id}: {' '.join(str(exc).split())[:200]}",
                       "check the network and HF_ENDPOINT, or reproduce from a local run directory") from exc
    return run_json, config


def _from_hub_paths(config: dict[str, Any]) -> dict[str, Any]:
    """A published config names packaged models ``site-packages/<package>/...``: back to ``pkg:<package>/...``."""
    model = config.get("model")
    if isinstance(model, dict) and str(model.get("name_or_path", "")).startswith("site-packages/"):
        config = {**config, "model": {**model, "name_or_path": "pkg:" + model["name_or_path"].split("/", 1)[1]}}
    return config


def rerun_config(source: RunSource, overrides: list[str] | tuple[str, ...], output_dir: Path,
                 overwrite: bool = False) -> Any:
    """The recorded config for the re-run: into ``output_dir``, without the speed benchmark (its timings are not
    reproducible numbers), then the user's ``--set`` overrides. Relative paths are taken from the working
    directory (a published run names its data relative to where it ran)."""
    from cardgen.config import load_config

    fixed = [f"output.dir={output_dir}", f"output.overwrite={str(overwrite).lower()}", "output.overwrite_card=false",
             "benchmark.enabled=false"]
    return load_config(data=source.config, overrides=[*fixed, *overrides])


def _resolve(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path.cwd() / p


def data_changes(source: RunSource, cfg: Any) -> list[Change]:
    """Data that differs from what the run recorded: each file's sha256, and for Hub datasets (no files) the
    fingerprints of the prepared splits."""
    from cardgen.data import file_sha256

    record = source.record
    files = dict(record.data.files)
    if record.general is not None:
        files.update(record.general.files)
    changes = []
    for name, digest in files.items():
        path = _resolve(name)
        if not path.is_file():
            changes.append(Change("data", name, digest[:12], "missing"))
        elif (now := file_sha256(path)) != digest:
            changes.append(Change("data", name, digest[:12], now[:12]))
    if record.data.hub_dataset and not record.data.files:
        changes += _split_changes(record, cfg)
    return changes


def _split_changes(record: RunRecord, cfg: Any) -> list[Change]:
    """A Hub dataset's splits, prepared now as the run would, against the recorded fingerprints."""
    from cardgen.models import auto_config, hf_quiet, load_tokenizer, resolve_source
    from cardgen.tasks import get_task

    with hf_quiet():
        tokenizer = load_tokenizer(cfg.model, *resolve_source(cfg.model))
        prepared = get_task(cfg.task).prepare_data(cfg, tokenizer, cfg.training is not None, auto_config(cfg))
    out = []
    for name, split in record.data.splits.items():
        now = prepared.record.splits.get(name)
        if now is None or now.fingerprint != split.fingerprint:
            out.append(Change("data", f"{record.data.source} {name} split", split.fingerprint[:12],
                              now.fingerprint[:12] if now else "missing"))
    return out


def refuse_changed_data(changes: list[Change]) -> None:
    """Raise the one-line refusal for changed data (exit 2, before anything runs)."""
    if not changes:
        return
    first = changes[0]
    more = f" and {len(changes) - 1} more" if len(changes) > 1 else ""
    now = "is missing" if first.now == "missing" else f"has sha256 {first.now}..., not {first.recorded}..."
    raise DataError(f"the data changed since the run: {first.name} {now}{more}; the re-run would not reproduce it",
                    "restore the recorded data, or pass --allow-data-change to re-run on the data as it is now "
                    "(the report lists the change)")


def environment_changes(recorded: RunRecord, rerun: RunRecord) -> list[Change]:
    """Versions and hardware that differ between the recorded run and the re-run."""
    a, b = recorded.environment, rerun.environment
    out = [Change("version", "cardgen", recorded.cardgen_version, rerun.cardgen_version)]
    out += [Change("version", k, str(getattr(a, k)), str(getattr(b, k))) for k in VERSIONS]
    for name in sorted(set(a.packages) | set(b.packages)):
        out.append(Change("version", name, a.packages.get(name, "not installed"), b.packages.get(name, "not installed")))
    out += [Change("hardware", k, str(getattr(a, k)), str(getattr(b, k))) for k in HARDWARE]
    return [c for c in out if c.recorded != c.now]


def config_changes(source: RunSource, rerun: RunRecord) -> list[Change]:
    """Config values the re-run used that differ from the recorded ones (``--set`` overrides), leaving out where
    outputs went and the benchmark. Paths of a published run were shortened on push: its data is compared by
    sha256 instead."""
    recorded, now = _flatten(source.record.config), _flatten(rerun.config)
    out = []
    for key in sorted(set(recorded) | set(now)):
        if key.startswith(("output.", "benchmark.")):
            continue
        a, b = recorded.get(key), now.get(key)
        if a == b or (source.from_hub and isinstance(a, str) and "/" in a):
            continue
        out.append(Change("config", key, repr(a), repr(b)))
    return out


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _metrics(record: RunRecord) -> list[tuple[str, str, str, float, list[float] | None]]:
    """(group, key, name, value, recorded interval) of every number a re-run should reproduce."""
    out: list[tuple[str, str, str, float, list[float] | None]] = []

    def add(group: str, label: str, metrics: dict[str, Any], intervals: dict[str, list[float]]) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                out.append((group, key, f"{label} {METRIC_NAMES.get(key, key)}", float(value), intervals.get(key)))

    for group, label, ev, comparison in (("test", "", record.evaluation, record.comparison),
                                         ("general", "general:", record.general.fine_tuned if record.general else None,
                                          record.general.comparison if record.general else None)):
        rows = {r.key: r for r in comparison.metrics} if comparison is not None else {}
        split = ev.split if ev is not None else ""
        prefix = f"{label} {split}".strip() if group == "test" else label
        if ev is not None:
            add(group, prefix, ev.metrics, {k: r.fine_tuned[1:] for k, r in rows.items()})
        base = record.base_evaluation if group == "test" else (record.general.base if record.general else None)
        if base is not None:
            add(f"{group} base", f"{prefix} base", base.metrics, {k: r.base[1:] for k, r in rows.items()})
        add(f"{group} change", f"{prefix} change in", {k: r.delta[0] for k, r in rows.items()},
            {k: r.delta[1:] for k, r in rows.items()})
    tr = record.training
    if tr is not None:
        add("training", "training:", {k: v for k, v in (("best validation " + tr.metric_for_best_model, tr.best_metric),
                                                         ("final train loss", tr.train_loss)) if v is not None}, {})
    return out


def drift_report(source: RunSource, rerun: RunRecord, *, tolerance: float = 1e-6, criterion: str = "tolerance",
                 changes: list[Change] | None = None, rerun_dir: str | None = None,
                 seconds: float | None = None) -> ReproduceReport:
    """Each recorded metric against the re-run: difference, inside the recorded interval, holds or not.

    Args:
        source: The recorded run.
        rerun: The re-run's record.
        tolerance: Largest difference that still holds (relative to the value above 1).
        criterion: ``"tolerance"``, or ``"interval"``: a metric with a recorded interval holds when the re-run
            falls inside it.
        changes: Data changes found before the re-run (allowed with --allow-data-change).
        rerun_dir: Where the re-run's outputs are kept (None: removed).
        seconds: Wall time of the re-run.
    """
    now = {(g, k): v for g, k, _, v, _ in _metrics(rerun)}
    rows = []
    for group, key, name, value, interval in _metrics(source.record):
        new = now.get((group, key))
        diff = new - value if new is not None else None
        inside = (interval[0] <= new <= interval[1]) if interval is not None and new is not None else None
        close = diff is not None and abs(diff) <= tolerance * max(1.0, abs(value))
        holds = bool(inside) if criterion == "interval" and inside is not None else close
        rows.append(DriftRow(group=group, key=key, name=name, recorded=value, rerun=new, difference=diff,
                             interval=list(interval) if interval is not None else None, inside=inside, holds=holds))
    return ReproduceReport(
        source=source.location, holds=bool(rows) and all(r.holds for r in rows) and rerun.status == "completed",
        tolerance=tolerance, criterion=criterion, rows=rows,
        changes=[*(changes or []), *config_changes(source, rerun), *environment_changes(source.record, rerun)],
        rerun_dir=rerun_dir,
        rerun_status=rerun.status, seconds=round(seconds, 1) if seconds is not None else None)
