"""The only place that prints: a rich console, tables and progress bars.

Library code reports progress through the small :class:`Progress` protocol; the CLI passes
:class:`RichProgress`, tests pass nothing (the default :class:`NullProgress`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

console = Console(stderr=False, highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class Progress(Protocol):
    """How long-running library code tells the user where it is."""

    def stage(self, name: str) -> None:
        """A new stage begins (a line of status)."""

    def start_task(self, description: str, total: int | None) -> None:
        """A bar for ``total`` units of work (None: unknown)."""

    def advance(self, n: int = 1, **fields: Any) -> None:
        """``n`` units done; ``fields`` (loss=..., epoch=...) update the bar's text."""

    def end_task(self) -> None:
        """The current bar is finished."""

    def note(self, message: str) -> None:
        """A line of information (a warning, a saved file)."""


class NullProgress:
    """Reports nothing: the default for library calls and tests."""

    def stage(self, name: str) -> None:
        pass

    def start_task(self, description: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def end_task(self) -> None:
        pass

    def note(self, message: str) -> None:
        pass


class RichProgress:
    """Progress on the terminal with rich: one bar at a time, stage headings and notes."""

    def __init__(self, target: Console | None = None, quiet: bool = False) -> None:
        self.console = target or err_console
        self.quiet = quiet
        self._progress: Any = None
        self._task: Any = None

    def stage(self, name: str) -> None:
        if not self.quiet:
            self.console.print(f"[bold cyan]>[/] {name}")

    def start_task(self, description: str, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.end_task()
        if self.quiet:
            return
        self._progress = Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, info="")

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self._progress is None:
            return
        info = "  ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        if info:
            self._progress.update(self._task, advance=n, info=info)
        else:
            self._progress.update(self._task, advance=n)

    def end_task(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    def note(self, message: str) -> None:
        if not self.quiet:
            target = self._progress.console if self._progress is not None else self.console
            target.print(f"  {message}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_error(message: str) -> None:
    """One line on stderr: ``Error: ...``."""
    err_console.print(f"Error: {message}", markup=False, highlight=False)


def print_warning(message: str) -> None:
    """One line on stderr: ``Warning: ...`` (shown with --quiet and --json too)."""
    err_console.print(f"Warning: {message}", markup=False, highlight=False)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A simple rich table on stdout."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col and col[0].isupper() is False else "left")
    for row in rows:
        table.add_row(*[_fmt(v) if not isinstance(v, str) else v for v in row])
    console.print(table)


def print_text(text: str) -> None:
    """Plain text on stdout, no markup."""
    console.print(text, markup=False, highlight=False)


def print_plain(text: str) -> None:
    """Text on stdout exactly as given (no markup, no wrapping at the terminal's width): file contents and
    lines that scripts read."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def print_json(data: Any) -> None:
    """Machine-readable output for CI pipelines: bare JSON on stdout."""
    import json

    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()
