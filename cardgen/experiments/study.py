"""The optuna study behind ``cardgen sweep``: storage, sampler and pruner, the workers that share it, and the
bookkeeping that keeps the number of trials exact when workers die or several run at once.

Trials are counted by state. A trial holds one of the study's ``trials`` places while it is waiting, running,
complete or pruned; a failed one frees its place. Optuna numbers trials atomically in the storage, so every
worker can tell whether a trial it just started is within the places (the places go to the lowest numbers):
one that is not is a surplus trial, which fails at once without training and is left out of the record.

A worker that dies (kill -9) leaves its trial "running". The next worker on the same host sees that the process
is gone and hands the trial back (failed, and re-queued with the same settings and reported values), so
``--resume`` re-runs it, from its last epoch checkpoint where that checkpoint is on this host. Trials of workers
on other hosts are handed back when their heartbeat stops (optuna's heartbeat, checked before every trial).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardgen.config import RunConfig, SearchParam
from cardgen.errors import ConfigError, OutputError

STUDY_FILE = "study.db"
HEARTBEAT_S = 30  # a running trial writes a heartbeat this often
GRACE_S = 120  # a trial of another host without a heartbeat for this long is handed back
HOLDING = ("WAITING", "RUNNING", "COMPLETE", "PRUNED")  # states that hold one of the study's places


class SurplusTrial(Exception):
    """A trial started after the study's places were all taken (two workers asked at once)."""


class TrialInterrupted(Exception):
    """The worker was stopped (Ctrl-C, SIGTERM) during the trial; the trial was re-queued."""


@dataclass(frozen=True)
class Worker:
    """The process running trials: where it runs and where it keeps its checkpoints."""

    host: str
    pid: int
    started: float  # the process's start time (tells a reused pid apart)
    out_dir: str

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"

    def attrs(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "started": self.started, "out_dir": self.out_dir}


def this_worker(out_dir: Path) -> Worker:
    import psutil

    return Worker(host=socket.gethostname(), pid=os.getpid(), started=psutil.Process().create_time(),
                  out_dir=str(out_dir.resolve()))


def storage_url(cfg: RunConfig, out_dir: Path) -> str:
    """The study's storage: ``sweep.storage``, or an SQLite file in the output directory."""
    return cfg.sweep.storage or f"sqlite:///{(out_dir / STUDY_FILE).resolve()}"


def local_study_file(url: str) -> Path | None:
    """The SQLite file behind ``url``, when it is one."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def shown_url(url: str) -> str:
    """The storage URL without a password, for the record and messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def study_name(cfg: RunConfig, out_dir: Path) -> str:
    return cfg.sweep.study_name or cfg.card.model_name or out_dir.resolve().name


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's per-trial log lines and experimental-API warnings off: cardgen reports trials itself."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def open_storage(url: str) -> Any:
    """An optuna RDB storage with heartbeats (stale trials are re-queued with their settings).

    Raises:
        ConfigError: the URL is no storage optuna can open.
    """
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # workers wait for each other's writes
    try:
        return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                              inherit_intermediate_values=True), **kwargs)
    except Exception as exc:  # a bad URL, a missing driver, a server that does not answer
        raise ConfigError(f"`sweep.storage` {shown_url(url)} cannot be opened: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}",
                          "give an optuna RDB URL, e.g. sqlite:///study.db or postgresql://user:pw@host/db "
                          "(its driver installed)") from exc


def space_attr(params: list[SearchParam]) -> list[dict[str, Any]]:
    return [{"key": p.key, "type": p.type, "low": p.low, "high": p.high, "step": p.step, "log": p.log,
             "choices": list(p.choices)} for p in params]


def open_study(cfg: RunConfig, out_dir: Path, params: list[SearchParam], direction: str, trials: int) -> Any:
    """Create the study, or join the one in the storage (the same space and direction, or an error)."""
    import optuna

    sweep = cfg.sweep
    startup = sweep.startup_trials or max(1, min(10, trials // 3))
    sampler = optuna.samplers.TPESampler(seed=sweep.seed, n_startup_trials=startup)
    pruner: Any = (optuna.pruners.MedianPruner(n_startup_trials=sweep.prune_after_trials, n_warmup_steps=0)
                   if sweep.pruner == "median" else optuna.pruners.NopPruner())
    url = storage_url(cfg, out_dir)
    name = study_name(cfg, out_dir)
    study = optuna.create_study(storage=open_storage(url), sampler=sampler, pruner=pruner, study_name=name,
                                direction=direction, load_if_exists=True)  # type: ignore[arg-type]
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study {name!r} in {shown_url(url)} was made to {study.direction.name.lower()}, this "
                          f"sweep would {direction}", "use another sweep.study_name or storage")
    recorded = study.user_attrs.get("cardgen_space")
    if recorded is None:
        study.set_user_attr("cardgen_space", space_attr(params))
        study.set_user_attr("cardgen_sampler", f"TPE (seed {sweep.seed}, {startup} random startup trials)")
        study.set_user_attr("cardgen_pruner", (f"median of the trials at the same evaluation (after "
                                               f"{sweep.prune_after_trials} finished trials)")
                            if sweep.pruner == "median" else "none")
    elif recorded != space_attr(params):
        raise ConfigError(f"study {name!r} in {shown_url(url)} searches another space than this config's "
                          "sweep.space", "keep the space of the study, or start a new one (another output "
                          "directory, sweep.study_name or --overwrite)")
    return study


def study_exists(url: str, name: str) -> bool:
    import optuna

    file = local_study_file(url)
    if file is not None and not file.is_file():
        return False
    with quiet_optuna():
        summaries = optuna.get_all_study_summaries(open_storage(url), include_best_trial=False)
    return any(s.study_name == name for s in summaries)


def check_resume(cfg: RunConfig, out_dir: Path, resume: bool) -> None:
    """``--resume`` needs the study; ``--overwrite`` removes the output directory's own study file."""
    url = storage_url(cfg, out_dir)
    if resume:
        if cfg.output.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other",
                              "--resume continues the sweep in the output directory, --overwrite replaces it")
        if not study_exists(url, study_name(cfg, out_dir)):
            raise OutputError(f"nothing to resume: no study {study_name(cfg, out_dir)!r} in {shown_url(url)}",
                              "run without --resume (with --overwrite to replace what is in the output directory)")
    elif cfg.output.overwrite and cfg.sweep.storage is None:
        (out_dir / STUDY_FILE).unlink(missing_ok=True)  # this directory's own study: replaced, as --overwrite says


def states(study: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def is_surplus(study: Any, number: int, places: int) -> bool:
    """Whether trial ``number`` came after every place was taken (places go to the lowest numbers)."""
    held = sum(1 for t in study.get_trials(deepcopy=False) if t.number < number and t.state.name in HOLDING)
    return held >= places


def full(study: Any, places: int) -> bool:
    """Whether the study needs no more trials started: every place held and nothing waiting to be run."""
    counts = states(study)
    return sum(counts.get(s, 0) for s in HOLDING) >= places and not counts.get("WAITING")


def requeue(study: Any, frozen: Any) -> None:
    """Queue ``frozen``'s settings (and reported values) again as a new trial, as optuna's retry callback does."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)(study, frozen)


def hand_back_dead(study: Any, me: Worker) -> list[int]:
    """Fail and re-queue the running trials of workers on this host whose process is gone; their numbers."""
    import optuna
    import psutil

    handed = []
    # optuna has no public call that fails another process's trial: its storage API takes the internal trial id.
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker") or {}
        if worker.get("host") != me.host or worker.get("pid") == me.pid and worker.get("started") == me.started:
            continue
        try:
            alive = abs(psutil.Process(int(worker.get("pid", -1))).create_time() - float(worker["started"])) < 1
        except (psutil.Error, ValueError, KeyError, TypeError):
            alive = False
        if alive:
            continue
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # another worker was quicker
            study._storage.set_trial_user_attr(t._trial_id, "note", "its worker died")
            if study._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL):
                requeue(study, study._storage.get_trial(t._trial_id))
                handed.append(t.number)
    return handed


def hand_back_stale(study: Any) -> None:
    """Optuna's heartbeat check: running trials whose worker stopped writing heartbeats are failed and re-queued."""
    import optuna

    optuna.storages.fail_stale_trials(study)
