"""One error hierarchy. Each message says what is wrong; each hint says what to do about it.

The CLI translates a :class:`CardgenError` into one line ``Error: <message> (hint: <hint>)`` and exit code 2.
"""

from __future__ import annotations


class CardgenError(Exception):
    """Base class of every error cardgen reports to a user.

    Args:
        message: What is wrong, naming the key, flag, file or column involved.
        hint: What the user can do about it.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and hint as one line, newlines folded, for the terminal."""
        text = self.message if not self.hint else f"{self.message} (hint: {self.hint})"
        return " ".join(text.split())


class ConfigError(CardgenError):
    """The config file or a command-line override is wrong."""


class DataError(CardgenError):
    """A data file or dataset cannot be used as configured."""


class ModelError(CardgenError):
    """A checkpoint cannot be loaded, or does not fit the task."""


class OutputError(CardgenError):
    """The output directory or an output file cannot be written."""


class TemplateError(CardgenError):
    """A card template has a syntax error, an undefined variable or tries something unsafe."""


class HubError(CardgenError):
    """Publishing to the Hugging Face Hub failed."""


class RunInterrupted(CardgenError):
    """The user interrupted a run; what was done so far is saved."""

    exit_code = 130
