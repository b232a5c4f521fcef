"""The command line: a Click group whose commands parse options, call one library function and show the result.

Only this module and console.py touch the terminal. Errors from the library arrive as CardgenError and leave as
one line ``Error: ...`` with exit code 2; the traceback only with ``--debug`` or ``CARDGEN_DEBUG=1``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from cardgen.commands.common import DEBUG, debug_enabled
from cardgen.errors import CardgenError
from cardgen.version import __version__


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
        if isinstance(exc, _UsageError) or debug_enabled():
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
        DEBUG["flag"] = bool(ctx.params.get("debug"))
        try:
            return _one_line_usage(lambda: super(_Group, self).invoke(ctx), lambda: self._sub_context(ctx))
        finally:
            DEBUG["flag"] = False


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="cardgen")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """Fine-tune or load a transformers checkpoint, measure it honestly against its base model, and write a
    model card a reviewer can trust.

    \b
    Typical use:
      cardgen run examples/sentiment.yaml --output runs/sentiment
      cardgen run --model MODEL --data train.csv  # no config: task and columns inferred
      cardgen check examples/sentiment.yaml      # the plan, without running
      cardgen card runs/sentiment                # re-render README.md from run.json
      cardgen compare BASE FT --data test.tsv    # base vs fine-tuned with intervals
      cardgen push runs/sentiment --repo-id you/sentiment-minilm
    """


def _register() -> None:
    from cardgen.commands.bench import bench
    from cardgen.commands.card import card, lint, push
    from cardgen.commands.compare import compare
    from cardgen.commands.reproduce import reproduce
    from cardgen.commands.run import run
    from cardgen.commands.start import check, init
    from cardgen.commands.sweep import sweep

    for command in (run, card, push, compare, lint, bench, sweep, reproduce, check, init):
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="cardgen")


if __name__ == "__main__":  # pragma: no cover
    main()
