"""``cardgen sweep``: a hyperparameter search over config keys whose best trial's best checkpoint is the model
the run then evaluates, compares, benchmarks and documents.

Each trial is a full cardgen training (the same Trainer setup, data and seeding as ``cardgen run``) of the run's
config with the trial's values set, on a freshly loaded base model. Its objective is the validation metric of
its BEST epoch (the epoch whose weights the Trainer keeps), not of its last. The per-epoch validation metric is
reported to optuna after every evaluation, so the median pruner can stop a trial that trails the others.

Why optuna is driven here rather than through ``Trainer.hyperparameter_search(backend="optuna")`` (transformers
5.25): its ``hp_space`` can only set TrainingArguments fields (other keys are warned about and skipped), while a
sweep here searches any config key (``data.max_length``, ``lm.block_size``, cardgen's ``training.warmup``); it
passes no callbacks to ``study.optimize`` and counts ``n_trials`` per call, so neither a resumed study nor two
workers on one study can stop at exactly N trials; it releases each trial's model and returns only the settings,
so the best trial's best checkpoint is gone; and it never passes a checkpoint to a re-run trial, so a killed trial
starts over. Every one of those is what this module adds; the sampler, pruner, storage, heartbeats and retries
are optuna's own.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from cardgen.config import RunConfig, SearchParam
from cardgen.console import Progress
from cardgen.errors import OutputError, RunFailed
from cardgen.experiments import study as st
from cardgen.experiments.kept import fresh_model, keep, kept_info, load_kept, work_dir
from cardgen.experiments.seeds import better, train_seeds
from cardgen.experiments.space import DATA_SECTIONS, apply, check_space, suggest
from cardgen.experiments.stage import Trained
from cardgen.record import ExperimentsRecord, SearchSpaceEntry, SweepRecord, SweepTrial

TRIALS_DIR = "trials"
POLL_S = 2.0  # how often a worker that is done looks at the trials other workers still run


class SweepTrainings:
    """The training stage of ``cardgen sweep``: the whole study, then the kept trial's model."""

    def __init__(self, trials: int) -> None:
        self.trials = trials

    def check_resume(self, cfg: RunConfig, out_dir: Path, resume: bool) -> None:
        st.check_resume(cfg, out_dir, resume)

    def __call__(self, cfg: RunConfig, task: Any, loaded: Any, data: Any, out_dir: Path, progress: Progress,
                 resume: bool) -> Trained:
        return run_study(cfg, task, loaded, data, out_dir, progress, resume, self.trials)


def pruning_callback(trial: Any, metric: str) -> Any:
    """A TrainerCallback that reports each evaluation's validation metric to the trial and stops training when
    the pruner says so (``pruned_at``: the evaluation it stopped after)."""
    from transformers import TrainerCallback

    class ReportToStudy(TrainerCallback):  # type: ignore[misc]
        pruned_at: int | None = None

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> None:
            value = (metrics or {}).get(f"eval_{metric}")
            if value is None:
                return
            step = sum(1 for e in state.log_history if "eval_loss" in e)  # continues across a resume
            trial.report(float(value), step)
            if trial.should_prune():
                self.pruned_at = step
                control.should_training_stop = True

    return ReportToStudy()


def params_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in values.items())


@dataclasses.dataclass
class _Trials:
    """The objective and the worker loop of one study."""

    cfg: RunConfig
    task: Any
    loaded: Any
    data: Any
    root: Path
    progress: Progress
    params: list[SearchParam]
    metric: str
    greater: bool
    study: Any
    me: st.Worker
    places: int
    kept_value: float | None = None
    stopped: Any = None  # the TrainingRecord of a trial the user stopped

    def data_for(self, cfg: RunConfig, keys: list[str]) -> Any:
        """The run's data, or the data prepared anew when the trial changed how it is prepared."""
        if not any(k.split(".")[0] in DATA_SECTIONS for k in keys):
            return self.data
        from cardgen.models import auto_config

        return self.task.prepare_data(cfg, self.loaded.tokenizer, True, auto_config(cfg))

    def objective(self, trial: Any) -> float:
        import optuna

        from cardgen.train import last_checkpoint, train

        if st.is_surplus(self.study, trial.number, self.places):
            trial.set_user_attr("surplus", True)
            self.study.stop()
            raise st.SurplusTrial(f"trial {trial.number} came after the study's {self.places} places were taken")
        retry_of = self.study._storage.get_trial(trial._trial_id).system_attrs.get("failed_trial")
        trial.set_user_attr("worker", self.me.attrs())
        trial.set_user_attr("note", None)  # a re-queued trial inherits the note of the one it re-runs
        values = {p.key: suggest(trial, p) for p in self.params}
        cfg_t = apply(self.cfg, values)
        data_t = self.data_for(cfg_t, list(values))
        one = fresh_model(cfg_t, self.task, self.loaded, data_t.label_names)
        trial_dir = self.root / f"trial-{retry_of if retry_of is not None else trial.number}"
        report = pruning_callback(trial, self.metric)
        again = f", re-running trial {retry_of}" if retry_of is not None else ""
        self.progress.stage(f"Trial {trial.number}{again}: {params_text(values)}")
        start = time.perf_counter()
        training, interrupted = train(cfg_t, self.task, one, data_t, trial_dir, self.progress,
                                      resume=last_checkpoint(trial_dir) is not None, extra_callbacks=(report,))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
        trial.set_user_attr("best_epoch", training.best_epoch)
        trial.set_user_attr("resumed_from", training.resumed_from)
        if interrupted:
            self.stopped = training
            trial.set_user_attr("note", "stopped by the user; re-queued")
            st.requeue(self.study, self.study._storage.get_trial(trial._trial_id))
            raise st.TrialInterrupted
        if report.pruned_at is not None:
            shutil.rmtree(trial_dir, ignore_errors=True)
            self.progress.note(f"trial {trial.number} pruned after evaluation {report.pruned_at}")
            raise optuna.TrialPruned(f"pruned after evaluation {report.pruned_at}")
        value = training.best_metric
        if value is None:
            raise RunFailed(f"trial {trial.number} reported no validation {self.metric}",
                            "check training.metric_for_best_model")
        if better(value, self.kept_value, self.greater):
            keep(one, self.root / "best", {"trial": trial.number, "params": values}, training)
            self.kept_value = value
        shutil.rmtree(trial_dir, ignore_errors=True)
        self.progress.note(f"trial {trial.number}: best validation {self.metric} {value:.4f} at epoch "
                           f"{training.best_epoch:g}")
        return float(value)

    def stop_when_full(self, study: Any, frozen: Any) -> None:
        if st.full(study, self.places):
            study.stop()

    def run_all(self) -> bool:
        """Run trials until the study holds its places, then wait for other workers' trials; True when the
        user stopped this worker."""
        waiting_noted = False
        while True:
            st.hand_back_dead(self.study, self.me)
            st.hand_back_stale(self.study)
            if not st.full(self.study, self.places):
                try:
                    self.study.optimize(self.objective, callbacks=[self.stop_when_full], catch=(st.SurplusTrial,))
                except st.TrialInterrupted:
                    return True
                continue
            running = st.states(self.study).get("RUNNING", 0)
            if not running:
                return False
            if not waiting_noted:
                self.progress.note(f"waiting for {running} trial(s) running in other workers")
                waiting_noted = True
            time.sleep(POLL_S)


def run_study(cfg: RunConfig, task: Any, loaded: Any, data: Any, out_dir: Path, progress: Progress, resume: bool,
              trials: int) -> Trained:
    """Run (or resume, or join) the study; ``loaded.model`` ends as this worker's best trial's best epoch."""
    from cardgen.train import selection_metric

    params = check_space(cfg, task)
    metric, greater = selection_metric(cfg, task)
    root = work_dir(out_dir, TRIALS_DIR)
    if not resume:
        shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    with st.quiet_optuna():
        study = st.open_study(cfg, out_dir, params, "maximize" if greater else "minimize", trials)
        kept = kept_info(root / "best") or (previous_kept(out_dir) if resume else None)
        runner = _Trials(cfg=cfg, task=task, loaded=loaded, data=data, root=root, progress=progress, params=params,
                         metric=metric, greater=greater, study=study, me=st.this_worker(out_dir), places=trials,
                         kept_value=kept[1].best_metric if kept else None)
        interrupted = runner.run_all()
        record = sweep_record(cfg, out_dir, study, metric, trials, time.perf_counter() - start)
    if interrupted:
        return Trained(training=runner.stopped, interrupted=True, experiments=ExperimentsRecord(sweep=record))
    kept, kept_dir = kept_info(root / "best"), root / "best"
    if kept is None and resume:
        kept, kept_dir = previous_kept(out_dir), out_dir  # a finished sweep given more trials, none better
    if kept is None:
        raise OutputError(f"this worker finished no trial of the study, so it has no model to document"
                          f"{'; the best trial ran in ' + record.kept_elsewhere if record.kept_elsewhere else ''}",
                          "its model and card are in that worker's output directory")
    info, training = kept
    record.kept_trial = int(info["trial"])
    best_value = study.best_value if record.best_trial is not None else None
    if record.kept_trial == record.best_trial or training.best_metric == best_value:
        record.best_trial, record.kept_elsewhere = record.kept_trial, None  # a tie goes to the trial kept here
    cfg_kept = apply(cfg, info["params"])
    data_kept = runner.data_for(cfg_kept, list(info["params"]))
    if cfg.sweep.then_seeds and record.kept_trial == record.best_trial:
        assert cfg_kept.training is not None
        seed0 = cfg_kept.training.seed
        cfg_seeds = dataclasses.replace(cfg_kept, training=dataclasses.replace(
            cfg_kept.training, seeds=[seed0 + i for i in range(cfg.sweep.then_seeds)]))
        trained = train_seeds(cfg_seeds, task, loaded, data_kept, out_dir, progress, resume, reuse_loaded=False)
        assert trained.experiments is not None
        trained.experiments.sweep = record
        return dataclasses.replace(trained, cfg=cfg_seeds, data=data_kept if data_kept is not data else None)
    loaded.model = load_kept(loaded, kept_dir)
    return Trained(training=training, interrupted=False, experiments=ExperimentsRecord(sweep=record), cfg=cfg_kept,
                   data=data_kept if data_kept is not data else None)


def previous_kept(out_dir: Path) -> tuple[dict[str, Any], Any] | None:
    """What a finished sweep in ``out_dir`` kept (its trial, settings and TrainingRecord; the weights are the
    output directory's model), for a resume that adds trials; None when there is no such sweep."""
    from cardgen.errors import CardgenError
    from cardgen.record import load_record

    try:
        rec = load_record(out_dir)
    except CardgenError:
        return None
    sw = rec.experiments.sweep if rec.experiments else None
    if rec.status != "completed" or sw is None or sw.kept_trial is None or rec.training is None \
            or sw.then_seeds or not (out_dir / "config.json").is_file():
        return None
    trial = next((t for t in sw.trials if t.number == sw.kept_trial), None)
    return ({"trial": sw.kept_trial, "params": trial.params}, rec.training) if trial else None


def sweep_record(cfg: RunConfig, out_dir: Path, study: Any, metric: str, trials: int, seconds: float) -> SweepRecord:
    """The study as the card shows it: its space, every trial but surplus ones, and the best trial."""
    rows = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.user_attrs.get("surplus"):
            continue
        worker = t.user_attrs.get("worker") or {}
        rows.append(SweepTrial(
            number=t.number, state={"FAIL": "failed"}.get(t.state.name, t.state.name.lower()), params=dict(t.params),
            objective=t.value if t.state.name == "COMPLETE" else None, best_epoch=t.user_attrs.get("best_epoch"),
            values={str(k): float(v) for k, v in sorted(t.intermediate_values.items())},
            seconds=t.user_attrs.get("seconds"), worker=f"{worker.get('host')}:{worker.get('pid')}" if worker else None,
            retry_of=t.system_attrs.get("failed_trial"), note=t.user_attrs.get("note"),
            resumed_from=t.user_attrs.get("resumed_from")))
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    elsewhere = None
    if best is not None:
        worker = best.user_attrs.get("worker") or {}
        elsewhere = f"worker {worker.get('host')}:{worker.get('pid')} ({worker.get('out_dir')})"
    space = [SearchSpaceEntry(**entry) for entry in study.user_attrs.get("cardgen_space", [])]
    return SweepRecord(
        study_name=study.study_name, storage=st.shown_url(st.storage_url(cfg, out_dir)), metric=metric,
        direction=study.direction.name.lower(), trials_requested=trials,
        sampler=study.user_attrs.get("cardgen_sampler", "TPE"), pruner=study.user_attrs.get("cardgen_pruner", ""),
        space=space, trials=rows, best_trial=best.number if best else None, kept_trial=None,
        kept_elsewhere=elsewhere, then_seeds=cfg.sweep.then_seeds, seconds=round(seconds, 1))
