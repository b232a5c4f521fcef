"""What every command shares: one-line errors, quiet libraries, number parsing. No heavy imports here."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from cardgen.errors import CardgenError, ConfigError

F = TypeVar("F", bound=Callable[..., Any])


DEBUG = {"flag": False}  # set by --debug for the duration of one invocation


def debug_enabled() -> bool:
    """Whether tracebacks are wanted (``--debug`` or ``CARDGEN_DEBUG=1``)."""
    return DEBUG["flag"] or os.environ.get("CARDGEN_DEBUG", "").lower() in ("1", "true", "yes")


def handle_errors(func: F) -> F:
    """Turn library errors into one line and an exit code; Ctrl-C into exit 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cardgen.console import print_error

        try:
            return func(*args, **kwargs)
        except CardgenError as exc:
            if debug_enabled():
                raise
            print_error(exc.one_line())
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug_enabled():
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


def parse_number(text: str | float, flag: str, *, integer: bool = False, minimum: float = 1,
                 command: str = "bench") -> float:
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
        raise ConfigError(f"`{flag}` must be {kind} >= {minimum:g} (got {text!r})", f"see cardgen {command} --help")
    return value
