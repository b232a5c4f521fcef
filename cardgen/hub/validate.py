"""The Hub's own check of a card's metadata (``POST /api/validate-yaml``), shared by ``cardgen push`` (before
anything is written) and ``cardgen lint --online``."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from cardgen.console import NullProgress, Progress
from cardgen.hub.transport import retry


@dataclass
class HubVerdict:
    """What the Hub said about a card's metadata: errors reject the card, warnings do not."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def validate_on_hub(api: Any, card: str, progress: Progress | None = None,
                    waits: tuple[float, ...] | None = None) -> HubVerdict:
    """Ask the Hub behind ``api`` (an ``HfApi``) to validate ``card``'s YAML front matter.

    Raises:
        Exception: Whatever the client raised when the Hub could not be asked (network, 401, 5xx after retries).
    """
    verdict = HubVerdict()
    # RepoCard.validate posts to huggingface_hub's import-time ENDPOINT, not to this HfApi's endpoint; HfApi's own
    # validation (the one create_commit runs) does.
    validate = getattr(api, "_validate_yaml", None)
    if validate is None:  # an older client: create_commit validates anyway
        return verdict
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            retry(lambda: validate(card, repo_type="model"), "validate the card", progress or NullProgress(),
                  waits=waits)
        except ValueError as exc:
            if isinstance(exc, json.JSONDecodeError):
                raise
            reasons = [line.strip().lstrip("- ") for line in str(exc).splitlines()[1:] if line.strip()]
            verdict.errors = reasons or [str(exc)]
    for warning in caught:
        text = str(warning.message)
        lines = [line.strip().lstrip("- ") for line in text.splitlines()[1:] if line.strip()]
        verdict.warnings += lines or [" ".join(text.split())]
    return verdict


def lint_online(result: Any, token: str | None = None, endpoint: str | None = None) -> Any:
    """Add the Hub's verdict on the card of ``result`` (a :class:`~cardgen.card.lint.LintResult`) to its
    findings: each error a problem (``hub-rejected``), each warning a warning (``hub-warning``).

    Raises:
        HubError: The Hub could not be asked (no network, an endpoint that is not a URL, HTTP errors).
    """
    from pathlib import Path

    from huggingface_hub import HfApi

    from cardgen.card.lint import Finding
    from cardgen.errors import CardgenError
    from cardgen.hub.transport import request_timeout, resolve_token, scrub, timeout_seconds, to_hub_error
    from cardgen.version import __version__

    text = Path(result.path).read_text(encoding="utf-8")
    token = resolve_token(token)
    api = HfApi(endpoint=endpoint, token=token or False, library_name="cardgen", library_version=__version__)
    seconds = timeout_seconds()
    try:
        with request_timeout(seconds):
            verdict = validate_on_hub(api, text, waits=())
    except CardgenError as exc:
        raise scrub(exc, token) from None
    except Exception as exc:
        raise scrub(to_hub_error(exc, "the card", endpoint, seconds), token) from exc
    result.findings += [Finding("problem", "hub-rejected", f"the Hub rejects the metadata: {e}") for e in verdict.errors]
    result.findings += [Finding("warning", "hub-warning", f"the Hub warns: {w}") for w in verdict.warnings]
    return result
