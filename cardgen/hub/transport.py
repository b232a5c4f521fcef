"""Talking to the Hub: retries with backoff, a timeout per request, errors mapped to one line, tokens scrubbed.

huggingface_hub already retries its ``preupload`` call but none of the other calls a push makes (repo info,
create_repo, validate-yaml and, on purpose, the commit POST). These helpers retry those on 408/429/5xx and dropped
connections with a bounded backoff; before re-sending a commit the caller checks whether the previous attempt
landed after all (its answer lost), so a retry never makes a second commit or a second PR.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from cardgen.console import Progress
from cardgen.errors import CardgenError, HubError

T = TypeVar("T")


# Seconds to wait before each retry of a transient failure; its length bounds the number of retries.
RETRY_WAITS_S: tuple[float, ...] = (1.0, 2.0, 4.0)


# huggingface_hub's shared HTTP client waits forever for an answer; a push gives up on a request after this long
# (CARDGEN_HUB_TIMEOUT overrides it, in seconds) and retries it like any transient failure.
HUB_TIMEOUT_S = 120.0


_TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)


_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


LOGIN_HINT = "pass --token, set HF_TOKEN, or run `hf auth login` with a token that has write access"


def retry(call: Callable[[], T], what: str, progress: Progress,
           landed: Callable[[], Any] | None = None, waits: tuple[float, ...] | None = None) -> T:
    """Run ``call``, retrying transient failures after each of ``waits`` (default RETRY_WAITS_S; ``()``: no
    retries); ``landed`` (for commits) is asked before each retry whether the failed attempt took effect
    anyway, and its answer is returned if so."""
    for wait in (*(RETRY_WAITS_S if waits is None else waits), None):
        try:
            return call()
        except Exception as exc:
            if not _is_transient(exc):
                raise
            if wait is None:
                done = _check_landed(landed)
                if done is not None:
                    return done  # type: ignore[no-any-return]
                raise
            progress.note(f"could not {what} ({_describe(exc)}); retrying in {wait:g} s")
            time.sleep(wait)
            done = _check_landed(landed)
            if done is not None:
                progress.note("the previous attempt had landed after all; not committing again")
                return done  # type: ignore[no-any-return]
    raise AssertionError("unreachable")  # pragma: no cover


def timeout_seconds() -> float:
    raw = os.environ.get("CARDGEN_HUB_TIMEOUT")
    if raw is None:
        return HUB_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise HubError(f"CARDGEN_HUB_TIMEOUT must be a number of seconds > 0 (got {raw!r})",
                       "unset it for the default of 120 s")
    return seconds


@contextlib.contextmanager
def request_timeout(seconds: float, connect: float = 10.0) -> Iterator[None]:
    """Give every request of huggingface_hub's shared client ``seconds`` to answer (``connect`` seconds at most to
    connect), and put its own setting back afterwards."""
    try:
        import httpx2
        from huggingface_hub import get_session
    except ImportError:  # pragma: no cover - huggingface_hub<3 ships with httpx2
        yield
        return
    session = get_session()
    before = session.timeout
    session.timeout = httpx2.Timeout(seconds, connect=min(seconds, connect))
    try:
        yield
    finally:
        session.timeout = before


def _check_landed(landed: Callable[[], Any] | None) -> Any:
    if landed is None:
        return None
    try:
        return landed()
    except Exception as exc:  # the Hub is still failing: the next attempt (or the original error) tells
        if not _is_transient(exc):
            raise
        return None


def _is_transient(exc: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        response = exc.response
        if response is None or response.status_code not in _TRANSIENT_STATUS:
            return False
        # huggingface_hub retried preupload itself (5 times, up to 8 s apart): do not multiply that.
        return "/preupload/" not in str(getattr(response.request, "url", ""))
    if isinstance(exc, json.JSONDecodeError):  # an error page instead of JSON (a proxy's 502)
        return True
    try:
        import httpx2
    except ImportError:  # pragma: no cover - huggingface_hub<3 ships with httpx2
        return False
    if isinstance(exc, _url_errors(httpx2)):  # a wrong HF_ENDPOINT stays wrong on every retry
        return False
    if isinstance(exc, httpx2.TransportError):
        url = ""
        with contextlib.suppress(RuntimeError):  # an exception raised before the request was built
            url = str(exc.request.url)
        return "/preupload/" not in url
    return False


def unreachable(exc: BaseException) -> str | None:
    """Why the Hub could not be reached at all (offline mode, no connection, a timeout, a server error), or
    None when ``exc`` is an answer of the Hub (401, 404, ...) or a mistake of ours (a malformed URL)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        return f"HTTP {status}" if status is not None and status >= 500 else None
    if isinstance(exc, (ConnectionError, json.JSONDecodeError)):
        return type(exc).__name__
    try:
        import httpx2
    except ImportError:  # pragma: no cover - huggingface_hub<3 ships with httpx2
        return None
    if isinstance(exc, httpx2.TransportError) and not isinstance(exc, _url_errors(httpx2)):
        return type(exc).__name__
    return None


def _url_errors(httpx2: Any) -> tuple[type[Exception], ...]:
    """Transport errors that come from the URL itself (ftp://, htp://, no scheme, malformed), not the network."""
    return (httpx2.UnsupportedProtocol, httpx2.InvalidURL)


def _describe(exc: BaseException) -> str:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


def to_hub_error(exc: Exception, repo_id: str, endpoint: str | None, timeout_s: float = HUB_TIMEOUT_S) -> HubError:
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = endpoint or constants.ENDPOINT
    if isinstance(exc, OfflineModeIsEnabled):
        return HubError("HF_HUB_OFFLINE is set, so the Hub cannot be reached", "unset HF_HUB_OFFLINE to push")
    if isinstance(exc, HFValidationError):
        return HubError(f"invalid repo id or revision: {exc}", "use --repo-id NAMESPACE/NAME")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        server = " ".join((exc.server_message or "").split())[:200]
        detail = f": {server}" if server else ""
        if status == 401 and not isinstance(exc, RepositoryNotFoundError):
            return HubError(f"the Hub rejected the token (HTTP 401{detail})", LOGIN_HINT)
        if isinstance(exc, RevisionNotFoundError):
            return HubError(f"revision not found in {repo_id} (HTTP {status})", "check --revision")
        if isinstance(exc, RepositoryNotFoundError) or status == 404:
            return HubError(f"{repo_id} not found or not visible with this token (HTTP {status})",
                            f"check --repo-id; {LOGIN_HINT}")
        if status == 403:
            return HubError(f"no write access to {repo_id} (HTTP 403{detail})",
                            "use a token with write access to that namespace")
        if status in (409, 412):
            return HubError(f"{repo_id} changed on the Hub during the push (HTTP {status}{detail}); "
                            "nothing was committed", "run the push again")
        if status >= 500 or status in _TRANSIENT_STATUS:
            return HubError(f"the Hub kept failing with HTTP {status} (retried with backoff); nothing was committed",
                            "the Hub may be down: try again later")
        return HubError(f"the Hub refused the request (HTTP {status}{detail})", "run with --debug for details")
    transport: tuple[type[Exception], ...] = ()
    try:
        import httpx2

        transport = (httpx2.TransportError,)
    except ImportError:  # pragma: no cover
        pass
    if transport and isinstance(exc, _url_errors(httpx2)):
        return HubError(f"the Hub endpoint {where!r} is not an http:// or https:// URL ({_first_line(exc)}); "
                        "nothing was committed", "set HF_ENDPOINT to e.g. https://huggingface.co, or unset it")
    if transport and isinstance(exc, httpx2.TimeoutException):
        return HubError(f"the Hub at {where} did not answer within {timeout_s:g} s ({type(exc).__name__}, "
                        "retried with backoff); nothing was committed",
                        "try again later, or allow longer with CARDGEN_HUB_TIMEOUT=SECONDS")
    if isinstance(exc, (*transport, ConnectionError, json.JSONDecodeError)):
        return HubError(f"cannot reach the Hub at {where} ({type(exc).__name__}); nothing was committed",
                        "check the network and HF_ENDPOINT, then run the push again")
    if isinstance(exc, OSError):
        return HubError(f"cannot read a file to push: {exc}", "check the run directory")
    raise exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def scrub(exc: CardgenError, token: str | None) -> CardgenError:
    """The token never leaves in an error message, whatever the server echoed."""
    if token and (token in exc.message or (exc.hint and token in exc.hint)):
        exc.message = exc.message.replace(token, "***")
        exc.hint = exc.hint.replace(token, "***") if exc.hint else exc.hint
        exc.args = (exc.message,)
    return exc


def resolve_token(token: str | None) -> str | None:
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def check_repo_id(repo_id: str, flag: str = "--repo-id") -> None:
    if not _REPO_ID_RE.match(repo_id or "") or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        raise HubError(f"{flag} must look like NAMESPACE/NAME (letters, digits, '-', '_', '.'), got {repo_id!r}",
                       f"for example {flag} your-name/sentiment-minilm")
