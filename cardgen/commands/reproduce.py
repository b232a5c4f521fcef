"""`cardgen reproduce RUN_DIR`: re-run a recorded run and print the drift table; exit 0 when every metric holds."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cardgen.commands.common import handle_errors, parse_number, quiet_libraries
from cardgen.record import ReproduceReport


@click.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--revision", metavar="REV", help="With a Hub repo id: the branch, tag or commit to read.")
@click.option("--token", metavar="TOKEN", help="With a Hub repo id: the token (default: HF_TOKEN or the login).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the re-run's outputs in this directory (default: a temporary one, removed afterwards).")
@click.option("--overwrite", is_flag=True, help="Replace the results in a non-empty --output directory.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change a config key for the re-run, e.g. --set training.learning_rate=6e-5 (repeatable).")
@click.option("--allow-data-change", is_flag=True,
              help="Re-run even when the data files differ from the ones the run recorded (listed in the report).")
@click.option("--tolerance", default="1e-6", show_default=True, metavar="X",
              help="Largest difference a metric may show and still hold (relative to its value above 1).")
@click.option("--within-interval", is_flag=True,
              help="A metric with a recorded interval holds when the re-run falls inside it (other hardware).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@handle_errors
def reproduce(run_dir: str, revision: str | None, token: str | None, output: Path | None, overwrite: bool,
              overrides: tuple[str, ...], allow_data_change: bool, tolerance: str, within_interval: bool,
              as_json: bool, quiet: bool) -> None:
    """Re-run the run recorded in RUN_DIR (an output directory of `cardgen run`, or a Hub repo id NS/NAME holding
    its run.json and config.yaml) and compare every metric with the recorded one.

    The data files are checked against the sha256 the run recorded first: a change is refused (exit 2) unless
    --allow-data-change. Then the drift table: each metric recorded and re-run, the difference, and whether the
    re-run falls inside the recorded interval; versions and hardware that differ are listed. Exit 0 when every
    metric holds, 1 otherwise. The speed benchmark is not re-run (timings are not reproducible numbers).
    """
    import shutil
    import tempfile
    import time

    from cardgen.console import RichProgress, print_json
    from cardgen.experiments.reproduce import (
        data_changes,
        drift_report,
        load_source,
        refuse_changed_data,
        rerun_config,
    )
    from cardgen.pipeline import run as run_pipeline
    from cardgen.record import to_dict

    tol = parse_number(tolerance, "--tolerance", minimum=0.0, command="reproduce")
    source = load_source(run_dir, revision, token)
    target = output or Path(tempfile.gettempdir()) / "cardgen-reproduce"  # replaced below when temporary
    cfg = rerun_config(source, overrides, target, overwrite)
    changes = data_changes(source, cfg)
    if not allow_data_change:
        refuse_changed_data(changes)  # exit 2, before anything runs or is written
    quiet_libraries()
    temporary = None
    if output is None:
        temporary = Path(tempfile.mkdtemp(prefix="cardgen-reproduce-"))
        cfg = rerun_config(source, overrides, temporary, overwrite)
    start = time.perf_counter()
    try:
        result = run_pipeline(cfg, progress=RichProgress(quiet=quiet or as_json))
        report = drift_report(source, result.record, tolerance=tol,
                              criterion="interval" if within_interval else "tolerance", changes=changes,
                              rerun_dir=str(output) if output else None, seconds=time.perf_counter() - start)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    if as_json:
        print_json(to_dict(report))
    else:
        show_report(report)
    sys.exit(0 if report.holds else 1)


def show_report(report: ReproduceReport) -> None:
    """The drift table and the changes, on the terminal."""
    from rich.markup import escape

    from cardgen.card.format import fmt
    from cardgen.console import print_table, print_text

    def yes_no(value: bool | None) -> str:
        return "—" if value is None else ("yes" if value else "NO")

    rows = [(escape(r.name), fmt(r.recorded, 6), fmt(r.rerun, 6),
             f"{r.difference:+.2e}" if r.difference is not None else "missing",
             f"[{fmt(r.interval[0])}, {fmt(r.interval[1])}]" if r.interval else "—", yes_no(r.inside),
             "yes" if r.holds else "NO") for r in report.rows]
    how = ("inside the recorded interval" if report.criterion == "interval"
           else f"within {report.tolerance:g} (relative above 1)")
    print_table(f"Drift: {report.source} recorded vs re-run (a metric holds when {how})",
                ["Metric", "recorded", "re-run", "difference", "recorded 95% CI", "inside CI", "holds"], rows)
    if report.changes:
        print_table("What differs", ["", "name", "recorded", "now"],
                    [(c.kind, escape(c.name), escape(c.recorded), escape(c.now)) for c in report.changes])
    else:
        print_text("Same data, versions and hardware as the recorded run.")
    if report.rerun_status != "completed":
        print_text(f"The re-run ended {report.rerun_status}.")
    failed = sum(not r.holds for r in report.rows)
    print_text(f"Reproduced: all {len(report.rows)} metrics hold." if report.holds else
               f"Not reproduced: {failed} of {len(report.rows)} metrics drifted.")
