"""`cardgen run`: fine-tune (or load), evaluate, compare, benchmark and write the card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cardgen.commands.common import handle_errors, quiet_libraries
from cardgen.commands.runconfig import run_options


@click.command()
@run_options
@click.option("--dry-run", is_flag=True, help="Check everything and print the plan, as `cardgen check` does; "
              "write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout (for CI).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@handle_errors
def run(config: Path | None, dry_run: bool, as_json: bool, quiet: bool, **options: Any) -> None:
    """Fine-tune (or only load) a checkpoint, evaluate it, compare it with its base model, benchmark both,
    and write run.json, config.yaml and README.md (the model card) into the output directory.

    CONFIG is a YAML file; see examples/ and the config reference in README.md. Without one, --model and --data
    start a run with defaults, inferring the task, the text and label columns and the label names (the card
    says what was inferred); `cardgen init` writes the same as a config file.
    """
    from cardgen.commands.runconfig import config_from_options, show_plan
    from cardgen.console import RichProgress, print_json, print_text
    from cardgen.pipeline import run as run_pipeline
    from cardgen.pipeline import summary

    progress_quiet = quiet or as_json
    if dry_run:
        show_plan(config, options, as_json=as_json, quiet=quiet)
        return
    with config_from_options(config, options, RichProgress(quiet=progress_quiet)) as (cfg, _):
        quiet_libraries()
        from cardgen.distributed import is_main_process

        main_process = is_main_process()  # under torchrun/accelerate only rank 0 reports, writes and pushes
        progress = RichProgress(quiet=progress_quiet or not main_process)
        result = run_pipeline(cfg, progress=progress, resume=options["resume"])
    if not main_process:
        return
    push_to = options["push_to"]
    verdict = result.record.verdict
    if push_to and verdict is not None and not verdict.passed:  # the ship gate failed: nothing ships
        from cardgen.console import print_warning

        print_warning(f"not pushed to {push_to}: a compare.require rule failed (see the Verdict); to publish it "
                      f"anyway: cardgen push {result.output_dir} --repo-id {push_to}")
    elif push_to:
        _push_after_run(result.output_dir, push_to, options["push_model"], options["token"], progress)
    if as_json:
        print_json(_json_summary(result, summary(result)))
    else:
        print_text(f"Wrote {result.output_dir / 'README.md'} and {result.output_dir / 'run.json'}")
    from cardgen.commands.verdict import exit_on_verdict

    exit_on_verdict(result.record.verdict, quiet=as_json)  # exit 3 when a compare.require rule fails


def _json_summary(result: Any, out: dict[str, Any]) -> dict[str, Any]:
    """`run --json`: the pipeline's summary, plus each seed's row and the spread when the run trained several."""
    seeds = result.record.experiments.seeds if result.record.experiments else None
    if seeds is not None:
        out["seeds"] = {"kept_seed": seeds.kept_seed, "runs": [
            {"seed": r.seed, "validation": r.validation_metric, "test_metrics": r.test_metrics} for r in seeds.runs],
            "test": {k: {"mean": v.mean, "std": v.std, "low": v.low, "high": v.high} for k, v in seeds.test.items()}}
    return out


def _push_after_run(output_dir: Path, repo_id: str, with_model: bool, token: str | None, progress: Any) -> None:
    """The push at the end of `run --push-to`: when it fails, the error says where the finished run is and
    gives the exact `cardgen push` command that publishes it (the token itself is never repeated)."""
    import shlex

    from cardgen.errors import HubError
    from cardgen.hub.push import push

    try:
        push(output_dir, repo_id=repo_id, token=token, with_model=with_model, progress=progress)
    except HubError as exc:
        command = " ".join(["cardgen push", shlex.quote(str(output_dir)), "--repo-id", shlex.quote(repo_id),
                            *(["--with-model"] if with_model else []), *(["--token", "TOKEN"] if token else [])])
        exc.message = f"the run finished and is saved in {output_dir}, but the push failed: {exc.message}"
        exc.hint = f"{exc.hint}; then publish the saved run with `{command}`"
        exc.args = (exc.message,)
        raise
