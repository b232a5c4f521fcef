"""`cardgen sweep`: a hyperparameter search whose best trial's best checkpoint is documented like `cardgen run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cardgen.commands.common import handle_errors, parse_number, quiet_libraries


def sweep_trials(text: str | None, configured: int | None) -> int:
    """``--trials`` (an integer >= 1), else ``sweep.trials``.

    Raises:
        ConfigError: neither is given, or ``--trials`` is not a whole number >= 1.
    """
    from cardgen.errors import ConfigError

    if text is not None:
        return int(parse_number(text, "--trials", integer=True, minimum=1, command="sweep"))
    if configured is None:
        raise ConfigError("the sweep has no number of trials", "pass --trials N, or set sweep.trials in the config")
    return configured


def check_sweep_inputs(cfg: Any) -> None:
    """Everything a sweep needs that can be checked before anything is written: optuna, one process, the space."""
    from cardgen.distributed import world_size
    from cardgen.errors import ConfigError
    from cardgen.experiments.space import check_space
    from cardgen.tasks import get_task

    try:
        import optuna  # noqa: F401
    except ImportError as exc:
        raise ConfigError("`cardgen sweep` needs optuna, which is not installed",
                          "pip install 'cardgen[sweep]'") from exc
    if world_size() > 1:
        raise ConfigError("`cardgen sweep` runs in one process; under torchrun every process would run trials",
                          "start one `cardgen sweep` per machine on one sweep.storage instead")
    check_space(cfg, get_task(cfg.task))


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trials", "trials_text", metavar="N", help="Finished trials (complete or pruned) the study should "
              "hold, counted over every worker and every resume (default: sweep.trials).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: output.dir in the config).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set sweep.seed=1 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue the study in the output directory (or in sweep.storage): "
              "trials a killed worker left running are re-run, from their last epoch checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the results (and the study file) in the output directory.")
@click.option("--overwrite-card", is_flag=True,
              help="Replace a README.md in the output directory that cardgen did not write.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout (for CI).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@handle_errors
def sweep(config: Path, trials_text: str | None, output: Path | None, overrides: tuple[str, ...], resume: bool,
          overwrite: bool, overwrite_card: bool, as_json: bool, quiet: bool) -> None:
    """Search the config keys of the `sweep:` section with optuna (seeded TPE, median pruning on the per-epoch
    validation metric), each trial scored by its best epoch; keep the best trial's best checkpoint and evaluate,
    compare, benchmark and document it like `cardgen run`, with a "Hyperparameter search" section.

    The study lives in OUTPUT/study.db, or in sweep.storage (any optuna RDB URL): workers on several machines
    that name the same storage share one study.
    """
    from cardgen.config import load_config
    from cardgen.console import RichProgress, print_json, print_text
    from cardgen.errors import RunInterrupted
    from cardgen.experiments.sweep import SweepTrainings
    from cardgen.pipeline import run as run_pipeline
    from cardgen.pipeline import summary

    extra = list(overrides)
    if output is not None:
        extra.append(f"output.dir={output}")
    if overwrite:
        extra.append("output.overwrite=true")
    if overwrite_card:
        extra.append("output.overwrite_card=true")
    cfg = load_config(config, extra)
    trials = sweep_trials(trials_text, cfg.sweep.trials)
    check_sweep_inputs(cfg)
    quiet_libraries()
    progress = RichProgress(quiet=quiet or as_json)
    try:
        result = run_pipeline(cfg, progress=progress, resume=resume, training=SweepTrainings(trials))
    except RunInterrupted as exc:
        exc.message = exc.message.replace("training interrupted", "sweep interrupted")
        exc.hint = f"continue with: cardgen sweep {config} --output {cfg.output.dir} --resume"
        exc.args = (exc.message,)
        raise
    rec = result.record
    sw = rec.experiments.sweep if rec.experiments else None
    if as_json:
        out = summary(result)
        if sw is not None:
            out["sweep"] = {"study": sw.study_name, "storage": sw.storage, "best_trial": sw.best_trial,
                            "kept_trial": sw.kept_trial, "kept_elsewhere": sw.kept_elsewhere,
                            "trials": [{"number": t.number, "state": t.state, "params": t.params,
                                        "objective": t.objective, "best_epoch": t.best_epoch} for t in sw.trials]}
        print_json(out)
    else:
        best = f"; best trial {sw.best_trial}" if sw is not None else ""
        print_text(f"Wrote {result.output_dir / 'README.md'} and {result.output_dir / 'run.json'}{best}")
