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

from cardgen.errors import CardgenError, ConfigError
from cardgen.version import __version__

F = TypeVar("F", bound=Callable[..., Any])


_DEBUG = {"flag": False}  # set by --debug for the duration of one invocation


def _debug_enabled() -> bool:
    return _DEBUG["flag"] or os.environ.get("CARDGEN_DEBUG", "").lower() in ("1", "true", "yes")


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


class _UsageError(click.UsageError):
    """A Click usage error shown like every other error: one line ``Error: ... (hint: ...)``, exit 2."""

    def __init__(self, exc: click.UsageError, ctx: click.Context | None = None) -> None:
        super().__init__(exc.message, exc.ctx or ctx)
        self.wrapped = exc

    def show(self, file: Any = None) -> None:
        from cardgen.console import print_error

        message = self.wrapped.format_message()
        ctx = self.ctx
        hint = "see `cardgen --help`"
        if ctx is not None:
            usage = " ".join(ctx.get_usage().split())
            hint = f"{usage[0].lower()}{usage[1:]}; see `{ctx.command_path} --help`"
        print_error(CardgenError(message, hint).one_line())


def _one_line_usage(call: Callable[[], Any], fallback: Callable[[], click.Context] | None = None) -> Any:
    """Run ``call``; a usage error leaves as :class:`_UsageError` (``fallback``: the context to describe when the
    error came from parsing, before the command's own context existed)."""
    try:
        return call()
    except click.exceptions.NoArgsIsHelpError:
        raise  # `cardgen` alone prints the help, as it should
    except click.UsageError as exc:
        if isinstance(exc, _UsageError) or _debug_enabled():
            raise
        raise _UsageError(exc, fallback() if fallback is not None and exc.ctx is None else None) from exc


class _Group(click.Group):
    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        return _one_line_usage(  # type: ignore[no-any-return]
            lambda: super(_Group, self).make_context(info_name, args, parent, **extra),
            lambda: click.Context(self, info_name=info_name, parent=parent))

    def _sub_context(self, ctx: click.Context) -> click.Context:
        name = ctx.invoked_subcommand
        command = self.commands.get(name) if name else None
        return click.Context(command, info_name=name, parent=ctx) if command is not None else ctx

    def invoke(self, ctx: click.Context) -> Any:
        # --debug is a group option; the error handler of the subcommand reads it from here.
        _DEBUG["flag"] = bool(ctx.params.get("debug"))
        try:
            return _one_line_usage(lambda: super(_Group, self).invoke(ctx), lambda: self._sub_context(ctx))
        finally:
            _DEBUG["flag"] = False


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


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: output.dir in the config).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set training.learning_rate=3e-5 (repeatable).")
@click.option("--no-train", is_flag=True, help="Only load, evaluate and document the checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the results in a non-empty output directory.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--overwrite-card", is_flag=True,
              help="Replace a README.md in the output directory that cardgen did not write (no cardgen sections).")
@click.option("--allow-pickle", is_flag=True,
              help="Load a checkpoint that has only pickle weights (pytorch_model.bin): only from a source you trust.")
@click.option("--push-to", metavar="NS/NAME", help="Publish the card to this Hub repo when the run ends "
              "(repo id and token are checked before the run starts).")
@click.option("--push-model", is_flag=True, help="With --push-to: also upload the model (safetensors, config, "
              "tokenizer) in the same commit.")
@click.option("--token", metavar="TOKEN", help="With --push-to: the Hub token (default: HF_TOKEN or the "
              "huggingface_hub login).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout (for CI).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@handle_errors
def run(config: Path, output: Path | None, overrides: tuple[str, ...], no_train: bool, overwrite: bool,
        resume: bool, overwrite_card: bool, allow_pickle: bool, push_to: str | None, push_model: bool,
        token: str | None, as_json: bool,
        quiet: bool) -> None:
    """Fine-tune (or only load) a checkpoint, evaluate it, compare it with its base model, benchmark both,
    and write run.json, config.yaml and README.md (the model card) into the output directory.

    CONFIG is a YAML file; see examples/ and the config reference in README.md.
    """
    from cardgen.config import load_config
    from cardgen.console import RichProgress, print_json, print_text
    from cardgen.errors import ConfigError
    from cardgen.pipeline import run as run_pipeline
    from cardgen.pipeline import summary

    extra = list(overrides)
    if output is not None:
        extra.append(f"output.dir={output}")
    if no_train:
        extra.append("training=null")
    if overwrite:
        extra.append("output.overwrite=true")
    if overwrite_card:
        extra.append("output.overwrite_card=true")
    if allow_pickle:
        extra.append("model.allow_pickle=true")
    cfg = load_config(config, extra)
    if push_model and not push_to:
        raise ConfigError("--push-model needs --push-to NS/NAME", "add --push-to, or drop --push-model")
    if push_model and not cfg.output.save_model:
        raise ConfigError("--push-model needs the model saved, but output.save_model is false",
                          "drop --set output.save_model=false, or drop --push-model")
    if token and not push_to:
        raise ConfigError("--token needs --push-to NS/NAME", "add --push-to, or drop --token")
    if push_to:
        from cardgen.hub.push import check_push_target

        check_push_target(push_to, token)  # fail now, not after hours of training
    quiet_libraries()
    from cardgen.distributed import is_main_process

    main_process = is_main_process()  # under torchrun/accelerate only rank 0 reports, writes and pushes
    progress = RichProgress(quiet=quiet or as_json or not main_process)
    result = run_pipeline(cfg, progress=progress, resume=resume)
    if not main_process:
        return
    if push_to:
        _push_after_run(result.output_dir, push_to, push_model, token, progress)
    if as_json:
        print_json(summary(result))
    else:
        print_text(f"Wrote {result.output_dir / 'README.md'} and {result.output_dir / 'run.json'}")


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


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-t", "--template", type=click.Path(dir_okay=False, path_type=Path),
              help="A Jinja template to render (sandboxed). Default: the run's card.template, else the built-in one.")
@click.option("--builtin", is_flag=True, help="Render the built-in template even if the run used its own.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the card (default: RUN_DIR/README.md).")
@click.option("--overwrite-card", is_flag=True,
              help="Replace an existing card that cardgen did not write (one without cardgen sections).")
@handle_errors
def card(run_dir: Path, template: Path | None, builtin: bool, output: Path | None, overwrite_card: bool) -> None:
    """Re-render the model card from RUN_DIR/run.json alone (no torch, no re-training)."""
    from cardgen.card.render import write_card
    from cardgen.console import print_text
    from cardgen.errors import ConfigError, TemplateError
    from cardgen.record import load_record

    if builtin and template:
        raise ConfigError("--template and --builtin exclude each other", "pass one of them")
    record = load_record(run_dir)
    if template is None and not builtin:
        used = (record.config.get("card") or {}).get("template")
        if used:
            template = Path(used)
            if not template.is_file():
                raise TemplateError(f"the run was rendered with template {template}, which no longer exists",
                                    "pass --template PATH, or --builtin for the built-in card")
    target = output or (run_dir / "README.md")
    write_card(record, target, template=template, overwrite_card=overwrite_card)
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
    from cardgen.hub.push import push as push_to_hub

    result = push_to_hub(run_dir, repo_id, token=token, create_pr=create_pr, private=private, revision=revision,
                         with_model=with_model, commit_message=commit_message, dry_run=dry_run,
                         overwrite=overwrite, progress=RichProgress())
    rows = [(f.path, f.status, f"{f.size:,}") for f in result.files]
    print_text(f"{result.repo_id} @ {result.revision}")
    print_table("Files", ["File", "Status", "bytes"], rows)
    if result.dry_run:
        print_text(result.diff or "The card on the Hub is the same as the one to push.")
        print_text(f"Dry run: nothing was written to {result.repo_url}")
    elif result.no_change:
        print_text(f"Nothing to push: {result.repo_url} already has these files.")
    elif result.pr_url:
        print_text(f"Opened pull request {result.pr_url}")
    else:
        print_text(f"Pushed {len(result.changed)} file(s) to {result.repo_url} ({result.commit_url})")


@cli.command()
@click.argument("base")
@click.argument("fine_tuned", metavar="FT")
@click.option("--data", required=True, metavar="FILE_OR_DATASET",
              help="Evaluation data: a csv/tsv/json/jsonl/parquet file, or a Hub dataset (or saved dataset dir).")
@click.option("--task", default="text-classification", show_default=True,
              help="The task of both models: text-classification, causal-lm, masked-lm or question-answering.")
@click.option("--split", default="test", show_default=True, help="The split to evaluate on.")
@click.option("--text-column", default="text", show_default=True, help="Column with the input text.")
@click.option("--label-column", default="label", show_default=True, help="Column with the gold label.")
@click.option("--label-names", metavar="A,B,...", help="Class names in the model's label-id order.")
@click.option("--max-length", type=int, help="Truncation length for both (default: FT's run.json, else 128).")
@click.option("--train", "train_file", metavar="FILE",
              help="Training examples for the linear probe, needed when BASE has no trained head for the labels.")
@click.option("--dataset-config", metavar="NAME", help="Config name of a Hub dataset.")
@click.option("--batch-size", type=int, help="Examples per forward pass (default: FT's run.json, else 32).")
@click.option("--bootstrap", type=int, default=1000, show_default=True,
              help="Bootstrap resamples for the intervals (and permutations for the p-values).")
@click.option("--confidence", type=float, default=0.95, show_default=True, help="Coverage of the intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of resampling, permutations and probe.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the comparison (with per-example predictions of both models) as JSON to this file.")
@click.option("--markdown", "markdown_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the card section 'Comparison with the base model' to this file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@handle_errors
def compare(base: str, fine_tuned: str, data: str, task: str, split: str, text_column: str, label_column: str,
            label_names: str | None, max_length: int | None, train_file: str | None, dataset_config: str | None,
            batch_size: int | None, bootstrap: int, confidence: float, seed: int, json_out: Path | None,
            markdown_out: Path | None, quiet: bool) -> None:
    """Evaluate BASE and FT on exactly the same examples and compare them: each metric with its confidence
    interval, the delta with its own interval, and a paired significance test.

    Text classification: when BASE has no trained head for the labels (an encoder), the base is a linear probe
    on its frozen features, fitted on --train; accuracy gets an exact McNemar test. Causal LM, masked LM and QA
    (--task): both models are evaluated by the task on the same documents (windows, masks and QA settings from
    FT's run.json when FT is a `cardgen run` output) with intervals and permutation tests over documents.
    """
    import json

    from rich.markup import escape

    from cardgen.card.comparison import table_rows
    from cardgen.card.format import display_model, format_interval
    from cardgen.card.render import render_markdown
    from cardgen.compare.checkpoints import compare as compare_models
    from cardgen.console import RichProgress, print_table, print_text
    from cardgen.files import atomic_write_text
    from cardgen.record import to_dict

    names = [n.strip() for n in label_names.split(",") if n.strip()] if label_names else None
    quiet_libraries()
    result = compare_models(base, fine_tuned, data, task=task, split=split, text_column=text_column,
                            label_column=label_column, label_names=names, max_length=max_length, train=train_file,
                            dataset_config=dataset_config, batch_size=batch_size, bootstrap_samples=bootstrap,
                            confidence=confidence, seed=seed, progress=RichProgress(quiet=quiet))
    how = {"linear-probe": "linear probe on frozen features", "zero-shot": "zero-shot"}.get(
        result.method, "evaluated as it is")
    print_text(f"Base {display_model(result.base_model)} ({how}) vs fine-tuned {display_model(fine_tuned)}: "
               f"{result.num_examples} {result.split} {'examples' if result.probe or result.per_class else 'documents'}"
               f", max length {result.max_length}")
    for warning in result.warnings:
        print_text(f"Warning: {warning}")
    ci = f"{result.confidence * 100:g}% CI"
    print_table(f"Base vs fine-tuned ({ci}, {result.bootstrap_samples} bootstrap resamples, seed {result.seed})",
                ["Metric", f"base [{ci}]", f"fine-tuned [{ci}]", f"delta [{ci}]", "p-value", "test"],
                [tuple(escape(cell) for cell in row) for row in table_rows(result)])
    if result.task == "text-classification":
        print_table("Per class", ["Class", "Metric", f"base [{ci}]", f"fine-tuned [{ci}]", f"delta [{ci}]"],
                    [(escape(r.label or ""), r.name, format_interval(r.base), format_interval(r.fine_tuned),
                      format_interval(r.delta, signed=True)) for r in result.per_class])
        print_text(f"Flips: {result.wrong_to_right} wrong -> right, {result.right_to_wrong} right -> wrong")
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(to_dict(result), indent=2, ensure_ascii=False) + "\n")
        print_text(f"Wrote {json_out}")
    if markdown_out is not None:
        atomic_write_text(markdown_out, render_markdown(result))
        print_text(f"Wrote {markdown_out}")


@cli.command()
@click.argument("card_path", metavar="CARD.md", type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Treat warnings (placeholder text, no results) as problems.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON on stdout (for CI).")
@handle_errors
def lint(card_path: Path, strict: bool, as_json: bool) -> None:
    """Check a model card offline: YAML front matter, no nulls, a valid model-index, a license and a base_model,
    no placeholder text left, and every referenced image present.

    Exit 0 when the card passes (warnings are listed), 1 with the list of problems, 2 when CARD.md is missing.
    """
    from cardgen.card.lint import lint_card
    from cardgen.console import print_json, print_text

    result = lint_card(card_path, strict=strict)
    if as_json:
        print_json(result.to_dict())
    else:
        for finding in result.problems + result.warnings:
            where = f"{result.path}:{finding.line}" if finding.line else result.path
            label = "problem" if finding in result.problems else "warning"
            print_text(f"{where}: {label} [{finding.code}] {finding.message}")
        n_p, n_w = len(result.problems), len(result.warnings)
        print_text(f"{result.path}: {'OK' if result.ok else 'FAILED'} ({n_p} problem{'s' * (n_p != 1)}, "
                   f"{n_w} warning{'s' * (n_w != 1)})")
    if not result.ok:
        sys.exit(1)


@cli.command()
@click.argument("checkpoint")
@click.option("--vs", "base", metavar="BASE", help="Also measure this checkpoint (e.g. the base model), interleaved.")
@click.option("--batch-sizes", default="1,32", show_default=True, metavar="N,N", help="Batch sizes to measure.")
@click.option("--seq-len", default="64", show_default=True, metavar="N", help="Tokens per row (synthetic inputs).")
@click.option("--precision", default="fp32", show_default=True, metavar="fp32|bf16|fp16",
              help="Autocast precision (bf16/fp16 on GPU; bf16 on CPUs with native bf16).")
@click.option("--compile", "compile_", is_flag=True, help="Wrap the models in torch.compile (cold call included).")
@click.option("--min-iterations", default="10", show_default=True, metavar="N",
              help="Fewest timed calls per model and batch size.")
@click.option("--min-seconds", default="1.0", show_default=True, metavar="S",
              help="Fewest timed seconds per model and batch size.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole benchmark record as JSON on stdout.")
@handle_errors
def bench(checkpoint: str, base: str | None, batch_sizes: str, seq_len: str, precision: str, compile_: bool,
          min_iterations: str, min_seconds: str, as_json: bool) -> None:
    """Latency (mean, p50, p90, p99), throughput, memory, load time and size of CHECKPOINT, and of BASE with
    --vs, measured in the same process in interleaved rounds. Causal LMs also get time to first token and
    decode speed.
    """
    from cardgen.bench.checkpoints import bench_checkpoints
    from cardgen.card.speed import cli_tables, describe, model_summary
    from cardgen.cli import parse_number
    from cardgen.console import print_json, print_table, print_text
    from cardgen.record import to_dict

    quiet_libraries()
    record = bench_checkpoints(checkpoint, base, batch_sizes=batch_sizes,
                               sequence_length=int(parse_number(seq_len, "--seq-len", integer=True)),
                               precision=precision, compile=compile_,
                               min_iterations=int(parse_number(min_iterations, "--min-iterations", integer=True)),
                               min_seconds=parse_number(min_seconds, "--min-seconds", minimum=0.0))
    if as_json:
        print_json(to_dict(record))
        return
    about = describe(record)
    for model in record.models.values():
        print_text(model_summary(model))
    for title, header, rows in cli_tables(record):
        print_table(title, header, rows)
    print_text(f"{about['hardware']}; {about['precision']}; {about['versions']}; load average {about['load_average']}")


def parse_number(text: str | float, flag: str, *, integer: bool = False, minimum: float = 1) -> float:
    """A command-line number: an integer (``integer``) or a finite float, at least ``minimum``.

    Raises:
        ConfigError: Anything else, naming ``flag``.
    """
    kind = "an integer" if integer else "a number"
    try:
        value = float(int(str(text).strip())) if integer else float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not value >= minimum or value == float("inf"):
        raise ConfigError(f"`{flag}` must be {kind} >= {minimum:g} (got {text!r})", "see cardgen bench --help")
    return value


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="cardgen")


if __name__ == "__main__":  # pragma: no cover
    main()
