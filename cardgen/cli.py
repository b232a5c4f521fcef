"""The command line: a Click group whose commands parse options, call one library function and show the result.

Only this module and console.py touch the terminal. Errors from the library arrive as CardgenError and leave as
one line ``Error: ...`` with exit code 2; the traceback only with ``--debug`` or ``CARDGEN_DEBUG=1``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cardgen import __version__
from cardgen.errors import CardgenError

F = TypeVar("F", bound=Callable[..., Any])


def _debug_enabled() -> bool:
    return os.environ.get("CARDGEN_DEBUG", "").lower() in ("1", "true", "yes")


def handle_errors(func: F) -> F:
    """Turn library errors into one line and an exit code; Ctrl-C into exit 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cardgen.console import print_error

        try:
            return func(*args, **kwargs)
        except CardgenError as exc:
            if _debug_enabled():
                raise
            print_error(exc.one_line())
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            if _debug_enabled():
                raise
            print_error("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def quiet_libraries() -> None:
    """cardgen shows its own progress and reports what loading revealed; silence the libraries' own output."""
    import warnings

    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        # --debug is a group option; make it visible to the error handler through the environment.
        if ctx.params.get("debug"):
            os.environ["CARDGEN_DEBUG"] = "1"
        return super().invoke(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="cardgen")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """Fine-tune or load a transformers checkpoint, measure it honestly against its base model, and write a
    model card a reviewer can trust.

    \b
    Typical use:
      cardgen run examples/sentiment.yaml --output runs/sentiment
      cardgen card runs/sentiment                # re-render README.md from run.json
      cardgen compare BASE FT --data test.tsv    # base vs fine-tuned with intervals
      cardgen push runs/sentiment --repo-id you/sentiment-minilm
    """
    if debug:
        os.environ["CARDGEN_DEBUG"] = "1"


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: output.dir in the config).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set training.learning_rate=3e-5 (repeatable).")
@click.option("--no-train", is_flag=True, help="Only load, evaluate and document the checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the results in a non-empty output directory.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--push-to", metavar="NS/NAME", help="Publish the card to this Hub repo when the run ends.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout (for CI).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@handle_errors
def run(config: Path, output: Path | None, overrides: tuple[str, ...], no_train: bool, overwrite: bool,
        resume: bool, push_to: str | None, as_json: bool, quiet: bool) -> None:
    """Fine-tune (or only load) a checkpoint, evaluate it, compare it with its base model, benchmark both,
    and write run.json, config.yaml and README.md (the model card) into the output directory.

    CONFIG is a YAML file; see examples/ and the config reference in README.md.
    """
    from cardgen.config import load_config
    from cardgen.console import RichProgress, print_json, print_text
    from cardgen.pipeline import run as run_pipeline
    from cardgen.pipeline import summary

    extra = list(overrides)
    if output is not None:
        extra.append(f"output.dir={output}")
    if no_train:
        extra.append("training=null")
    if overwrite:
        extra.append("output.overwrite=true")
    cfg = load_config(config, extra)
    quiet_libraries()
    progress = RichProgress(quiet=quiet or as_json)
    result = run_pipeline(cfg, progress=progress, resume=resume)
    if push_to:
        from cardgen.hub import push

        push(result.output_dir, repo_id=push_to, progress=progress)
    if as_json:
        print_json(summary(result))
    else:
        print_text(f"Wrote {result.output_dir / 'README.md'} and {result.output_dir / 'run.json'}")


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-t", "--template", type=click.Path(dir_okay=False, path_type=Path),
              help="A Jinja template to render instead of the built-in one (rendered in a sandbox).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the card (default: RUN_DIR/README.md).")
@handle_errors
def card(run_dir: Path, template: Path | None, output: Path | None) -> None:
    """Re-render the model card from RUN_DIR/run.json alone (no torch, no re-training)."""
    from cardgen.card import write_card
    from cardgen.console import print_text
    from cardgen.record import load_record

    record = load_record(run_dir)
    target = output or (run_dir / "README.md")
    write_card(record, target, template=template)
    print_text(f"Wrote {target}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--repo-id", required=True, metavar="NS/NAME", help="The model repo to publish to (created if missing).")
@click.option("--create-pr", is_flag=True, help="Open a pull request instead of committing to the branch.")
@click.option("--private", is_flag=True, help="Create the repo private.")
@click.option("--revision", metavar="BRANCH", help="Branch to commit to (default main), or the PR's base branch.")
@click.option("--with-model", is_flag=True, help="Also upload the weights, config and tokenizer files.")
@click.option("--commit-message", metavar="TEXT", help="Summary of the commit (or title of the pull request).")
@click.option("--dry-run", is_flag=True, help="Show what would be uploaded and the card diff; write nothing.")
@click.option("--token", metavar="TOKEN", help="Hub token (default: HF_TOKEN or the huggingface_hub login).")
@click.option("--overwrite", is_flag=True, help="Replace the card on the Hub instead of merging into it.")
@handle_errors
def push(run_dir: Path, repo_id: str, create_pr: bool, private: bool, revision: str | None, with_model: bool,
         commit_message: str | None, dry_run: bool, token: str | None, overwrite: bool) -> None:
    """Publish RUN_DIR's card, run.json and plots (and with --with-model the model) to the Hub in one commit.

    On an existing repo, cardgen's generated sections of the card are replaced and text written by people is
    kept (unless --overwrite).
    """
    from cardgen.console import RichProgress, print_table, print_text
    from cardgen.hub import push as push_to_hub

    result = push_to_hub(run_dir, repo_id, token=token, create_pr=create_pr, private=private, revision=revision,
                         with_model=with_model, commit_message=commit_message, dry_run=dry_run,
                         overwrite=overwrite, progress=RichProgress())
    rows = [(f.path, f.status, f"{f.size:,}") for f in result.files]
    print_table(f"Files for {result.repo_id}@{result.revision}", ["file", "status", "bytes"], rows)
    if result.dry_run:
        print_text(result.diff or "The card on the Hub is the same as the one to push.")
        print_text(f"Dry run: nothing was written to {result.repo_url}")
    elif result.no_change:
        print_text(f"Nothing to push: {result.repo_url} already has these files.")
    elif result.pr_url:
        print_text(f"Opened pull request {result.pr_url}")
    else:
        print_text(f"Pushed {len(result.changed)} file(s) to {result.repo_url} ({result.commit_url})")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="cardgen")


if __name__ == "__main__":  # pragma: no cover
    main()
