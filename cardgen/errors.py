"""One error hierarchy. Each message says what is wrong; each hint says what to do about it.

The CLI translates a :class:`CardgenError` into one line ``Error: <message> (hint: <hint>)`` and exit code 2.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field


class CardgenError(Exception):
    """Base class of every error cardgen reports to a user.

    Args:
        message: What is wrong, naming the key, flag, file or column involved.
        hint: What the user can do about it.
    """

    exit_code = 2
    # Used when a raise site gives no hint, so every error the user sees says what to do next.
    default_hint = "run with --debug for the full traceback"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint

    def one_line(self) -> str:
        """The message and hint as one line, newlines folded, for the terminal."""
        text = self.message if not self.hint else f"{self.message} (hint: {self.hint})"
        return " ".join(text.split())


class ConfigError(CardgenError):
    """The config file or a command-line override is wrong."""

    default_hint = "fix it in the config file or the --set override"


class DataError(CardgenError):
    """A data file or dataset cannot be used as configured."""

    default_hint = "check the data section of the config and the data files"


class ModelError(CardgenError):
    """A checkpoint cannot be loaded, or does not fit the task."""

    default_hint = "check model.name_or_path"


class OutputError(CardgenError):
    """The output directory or an output file cannot be written."""

    default_hint = "check the --output directory"


class TemplateError(CardgenError):
    """A card template has a syntax error, an undefined variable or tries something unsafe."""

    default_hint = "fix the template"


class HubError(CardgenError):
    """Publishing to the Hugging Face Hub failed."""

    default_hint = "run with --debug for details"


class RunInterrupted(CardgenError):
    """The user interrupted a run; what was done so far is saved."""

    exit_code = 130


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RunFailed(CardgenError):
    """A stage after training failed; the trained model and the run record so far are saved."""


@dataclass(frozen=True)
class CommandTerms:
    """How one command names what the config file calls keys: errors raised deep down (data, models, tasks) name
    config keys such as ``data.label_names``; a command that takes flags instead restates them in its own terms.

    Attributes:
        command: The command, for the fallback hint (``see `cardgen compare --help```).
        flags: Config key -> the command's flag (or argument) for it, e.g. ``data.label_names`` -> ``--label-names``.
        hints: Error class -> the hint to give when the raise site gave the class's default hint, or a hint that
            names a config key the command has no flag for, the config file or ``--set``.
        sections: The config's top-level sections (what a config key starts with).
    """

    command: str
    flags: Mapping[str, str]
    hints: Mapping[type[CardgenError], str] = field(default_factory=dict)
    sections: tuple[str, ...] = ()

    def restate(self, exc: CardgenError) -> CardgenError:
        """``exc`` with its message and hint in the command's terms (changed in place, returned for ``raise``)."""
        exc.message = self._translate(exc.message)
        hint = self._translate(exc.hint) if exc.hint else exc.hint
        if not hint or exc.hint == type(exc).default_hint or self._foreign(hint):
            hint = next((h for cls, h in self.hints.items() if isinstance(exc, cls)),
                        f"see `cardgen {self.command} --help`")
        exc.hint = hint
        exc.args = (exc.message,)
        return exc

    def _translate(self, text: str) -> str:
        for key in sorted(self.flags, key=len, reverse=True):  # data.splits.test before data.splits
            pattern = re.compile(rf"(?<![\w.-]){re.escape(key)}(?![\w-]|\.\w)")
            text = pattern.sub(self.flags[key].replace("\\", "\\\\"), text)
        return text

    def _foreign(self, hint: str) -> bool:
        """Whether ``hint`` still speaks of the config: an unmapped key, the config file, ``--set``."""
        if re.search(r"--set\b|\bconfig file\b|\bthe config\b|\bin the config\b", hint):
            return True
        return any(re.search(rf"(?<![\w.-]){re.escape(s)}\.[A-Za-z_]", hint) for s in self.sections)
