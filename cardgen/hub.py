"""Publish a run's card (and optionally its model) to the Hugging Face Hub in one atomic commit.

Everything goes through ``huggingface_hub.HfApi``: ``create_repo(exist_ok=True)`` and ONE ``create_commit``, so
a push either lands completely or not at all. Before anything is written, the card's metadata is linted here
(no nulls, the model-index fields the Hub requires) and validated by the Hub (``/api/validate-yaml``).
On an existing repo the card is merged with the one on the Hub: generated sections are replaced, human text
and metadata keys cardgen does not write are kept (see :mod:`cardgen.markers`).

The token comes from the argument, ``HF_TOKEN`` or huggingface_hub's login cache. It is passed to the client
and nowhere else: never logged, never reported, and scrubbed from any error message.

Retries: huggingface_hub already retries its ``preupload`` call (5 times, 1-8 s backoff) but none of the other
calls used here (repo info, create_repo, validate-yaml and, on purpose, the commit POST). cardgen retries those
on 408/429/5xx and dropped connections with a bounded backoff; before re-sending a commit it checks whether the
previous attempt landed after all (its answer lost), so a retry never makes a second commit or a second PR.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cardgen.console import NullProgress, Progress
from cardgen.errors import CardgenError, HubError
from cardgen.markers import has_markers, join_front_matter, merge_generated, split_front_matter

T = TypeVar("T")

# Seconds to wait before each retry of a transient failure; its length bounds the number of retries.
RETRY_WAITS_S: tuple[float, ...] = (1.0, 2.0, 4.0)
# huggingface_hub's shared HTTP client waits forever for an answer; a push gives up on a request after this long
# (CARDGEN_HUB_TIMEOUT overrides it, in seconds) and retries it like any transient failure.
HUB_TIMEOUT_S = 120.0
_TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)

CARD_FILES = ("README.md", "run.json")
IMAGE_PATTERNS = ("*.png", "*.svg")
MODEL_PATTERNS = (
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
)
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_LOGIN_HINT = "pass --token, set HF_TOKEN, or run `hf auth login` with a token that has write access"


@dataclass(frozen=True)
class PushedFile:
    """One file of the commit: its path in the repo, size in bytes, and ``new``/``changed``/``unchanged``."""

    path: str
    size: int
    status: str


@dataclass(frozen=True)
class PushResult:
    """What a push did (or, with ``dry_run``, would do).

    Attributes:
        repo_id: ``namespace/name``.
        repo_url: The repo's page.
        revision: The branch the commit went to, or the PR's base branch.
        files: Every file of the commit with its status against the Hub.
        commit_oid: The commit created (or the head, when nothing changed); None for a dry run.
        commit_url: Its page.
        pr_url: The pull request opened with ``create_pr``.
        created_repo: The repo did not exist before this push.
        private: Whether the repo is private (None when unknown).
        no_change: Everything was already on the Hub: no commit was made.
        dry_run: Nothing was written.
        diff: Unified diff between the card on the Hub and the card pushed (empty when equal).
    """

    repo_id: str
    repo_url: str
    revision: str
    files: tuple[PushedFile, ...]
    commit_oid: str | None = None
    commit_url: str | None = None
    pr_url: str | None = None
    created_repo: bool = False
    private: bool | None = None
    no_change: bool = False
    dry_run: bool = False
    diff: str = ""

    @property
    def changed(self) -> tuple[PushedFile, ...]:
        """The files the commit adds or changes."""
        return tuple(f for f in self.files if f.status != "unchanged")


@dataclass
class _Remote:
    exists: bool = False
    private: bool | None = None
    head: str | None = None  # commit the push builds on
    branch_exists: bool = False
    files: dict[str, str] = field(default_factory=dict)  # path -> git blob id at head
    card: str | None = None
    pr_refs: frozenset[str] = frozenset()


# ------------------------------------------------------------------------------------------------ public API
def push(
    output_dir: Path,
    repo_id: str,
    *,
    token: str | None = None,
    create_pr: bool = False,
    private: bool = False,
    revision: str | None = None,
    with_model: bool = False,
    commit_message: str | None = None,
    dry_run: bool = False,
    overwrite: bool = False,
    endpoint: str | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Publish a run's card, run.json and images (and with ``with_model`` the model) in one commit.

    Args:
        output_dir: The run's output directory (README.md, run.json, plots, model files).
        repo_id: ``namespace/name`` of the model repo; created when missing.
        token: A Hub token; default ``HF_TOKEN`` or the huggingface_hub login cache. Never printed or stored.
        create_pr: Open a pull request instead of committing to the branch (the branch stays untouched).
        private: Create the repo private. An existing public repo is not made private: that is an error.
        revision: Target branch (created from main when missing), or the PR's base branch with ``create_pr``.
        with_model: Also upload the weights (``*.safetensors``), config and tokenizer files at the root.
        commit_message: Summary line of the commit (or title of the PR).
        dry_run: Validate and compare with the Hub, but write nothing.
        overwrite: Replace the card on the Hub instead of merging into it.
        endpoint: Hub URL; default ``HF_ENDPOINT`` (read by huggingface_hub at import).
        progress: Where to report steps; default :class:`~cardgen.console.NullProgress`.

    Returns:
        A :class:`PushResult`.

    Raises:
        HubError: A malformed repo id, no token, a card the Hub would reject, a human-written card that would be
            replaced, or any failure of the Hub (unreachable, 401/403, 404, 409/412, 5xx after retries).
    """
    progress = progress or NullProgress()
    output_dir = Path(output_dir)
    _check_repo_id(repo_id)
    if create_pr and revision is not None and revision.startswith("refs/pr/"):
        raise HubError("--create-pr needs a branch as --revision, not a pull request ref",
                       "drop --create-pr to add a commit to an existing pull request")
    token = _resolve_token(token)
    if token is None and not dry_run:
        raise HubError("no Hugging Face token found", _LOGIN_HINT)
    seconds = _timeout_seconds()
    try:
        with _request_timeout(seconds):
            return _push(output_dir, repo_id, token=token, create_pr=create_pr, private=private, revision=revision,
                         with_model=with_model, commit_message=commit_message, dry_run=dry_run, overwrite=overwrite,
                         endpoint=endpoint, progress=progress)
    except CardgenError as exc:
        raise _scrub(exc, token) from None
    except Exception as exc:
        raise _scrub(_to_hub_error(exc, repo_id, endpoint, seconds), token) from exc


def check_push_target(repo_id: str, token: str | None = None) -> None:
    """Before a long run that ends with a push: the repo id is well formed and a token is there.

    Raises:
        HubError: A malformed repo id, or no token (``--token``, ``HF_TOKEN`` or the login cache).
    """
    _check_repo_id(repo_id, "--push-to")
    if _resolve_token(token) is None:
        raise HubError("no Hugging Face token found, so the push at the end of the run would fail", _LOGIN_HINT)


def lint_card_metadata(metadata: dict[str, Any]) -> list[str]:
    """Problems the Hub would reject in a card's metadata: nulls anywhere, missing model-index fields.

    Args:
        metadata: The card's YAML front matter.

    Returns:
        One message per problem, naming the key path (empty when the metadata is fine).
    """
    problems = [f"`{path}` is null (the Hub rejects nulls; drop the key)" for path in _null_paths(metadata, "")]
    model_index = metadata.get("model-index")
    if model_index is None:
        return problems
    if not isinstance(model_index, list):
        return [*problems, "`model-index` must be a list"]
    for i, entry in enumerate(model_index):
        if not isinstance(entry, dict):
            problems.append(f"`model-index[{i}]` must be a mapping")
            continue
        if not entry.get("name"):
            problems.append(f"`model-index[{i}].name` is missing")
        for j, result in enumerate(entry.get("results") or []):
            where = f"model-index[{i}].results[{j}]"
            if not isinstance(result, dict):
                problems.append(f"`{where}` must be a mapping")
                continue
            if not (result.get("task") or {}).get("type"):
                problems.append(f"`{where}.task.type` is missing")
            dataset = result.get("dataset") or {}
            for key in ("type", "name"):
                if not dataset.get(key):
                    problems.append(f"`{where}.dataset.{key}` is missing")
            metrics = result.get("metrics") or []
            if not metrics:
                problems.append(f"`{where}.metrics` is empty")
            for k, metric in enumerate(metrics):
                if not isinstance(metric, dict) or not metric.get("type"):
                    problems.append(f"`{where}.metrics[{k}].type` is missing")
                if not isinstance(metric, dict) or "value" not in metric:
                    problems.append(f"`{where}.metrics[{k}].value` is missing")
    return problems


# ------------------------------------------------------------------------------------------------ the push
def _push(output_dir: Path, repo_id: str, *, token: str | None, create_pr: bool, private: bool,
          revision: str | None, with_model: bool, commit_message: str | None, dry_run: bool, overwrite: bool,
          endpoint: str | None, progress: Progress) -> PushResult:
    from huggingface_hub import CommitOperationAdd, HfApi

    from cardgen import __version__

    progress.stage(f"{'Checking' if dry_run else 'Pushing'} {output_dir} -> {repo_id}")
    local = _collect_files(output_dir, with_model)
    local_card = (output_dir / "README.md").read_text(encoding="utf-8")
    _lint_card(local_card, "README.md")

    api = HfApi(endpoint=endpoint, token=token if token else False, library_name="cardgen",
                library_version=__version__)
    branch = revision or "main"
    remote = _read_remote(api, repo_id, branch, progress)
    if token is None and not remote.exists:
        progress.note(f"no token: {repo_id} looks new, but a private repo would look the same")
    if remote.exists and private and remote.private is False:
        raise HubError(f"{repo_id} already exists and is public; --private only applies to a new repo",
                       "change the repo's visibility in its settings on the Hub, or drop --private")
    if create_pr and remote.exists and not remote.branch_exists:
        raise HubError(f"branch '{branch}' not found in {repo_id}; a pull request needs an existing base branch",
                       "check --revision")

    card = _card_to_push(local_card, remote.card, overwrite, repo_id)
    _lint_card(card, f"the card merged with the one on {repo_id}")
    _validate_on_hub(api, card, progress)

    contents: dict[str, bytes] = {path: src.read_bytes() for path, src in local.items()}
    contents["README.md"] = card.encode("utf-8")
    if "run.json" in contents:
        contents["run.json"] = public_run_json(contents["run.json"], output_dir)
    oids = {path: _git_blob_id(data) for path, data in contents.items()}
    files = tuple(
        PushedFile(path, len(data), "new" if path not in remote.files
                   else "unchanged" if remote.files[path] == oids[path] else "changed")
        for path, data in contents.items()
    )
    diff = "".join(difflib.unified_diff(
        (remote.card or "").splitlines(keepends=True), card.splitlines(keepends=True),
        fromfile=f"{repo_id}@{branch}/README.md (Hub)", tofile="README.md (to push)"))
    repo_url = f"{api.endpoint.rstrip('/')}/{repo_id}"
    base: dict[str, Any] = {"repo_id": repo_id, "repo_url": repo_url, "revision": branch, "files": files, "diff": diff,
            "private": remote.private if remote.exists else private, "created_repo": not remote.exists}
    if dry_run:
        return PushResult(**base, dry_run=True)
    if remote.exists and remote.branch_exists and all(f.status == "unchanged" for f in files):
        progress.note("everything is already on the Hub: no commit made")
        return PushResult(**base, commit_oid=remote.head, no_change=True,
                          commit_url=f"{repo_url}/commit/{remote.head}" if remote.head else None)

    if not remote.exists:
        progress.note(f"creating {'private ' if private else ''}repo {repo_id}")
        _retry(lambda: api.create_repo(repo_id, private=private, exist_ok=True), "create the repo", progress)
        remote = _read_remote(api, repo_id, branch, progress)
    if not remote.branch_exists and not create_pr and not branch.startswith("refs/pr/"):
        progress.note(f"creating branch '{branch}'")
        _retry(lambda: api.create_branch(repo_id, branch=branch, exist_ok=True), "create the branch", progress)
        remote = _read_remote(api, repo_id, branch, progress)

    message = commit_message or ("Upload model and card with cardgen" if with_model else
                                 "Upload model card with cardgen")
    changed = [f.path for f in files if f.status != "unchanged"]
    progress.note(f"committing {len(changed)} file(s){' as a pull request' if create_pr else ''}")

    def commit() -> Any:
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=contents[p]) for p in changed]
        return api.create_commit(repo_id, operations, commit_message=message,
                                 commit_description=f"Pushed with cardgen {__version__}.",
                                 revision=revision, create_pr=create_pr, parent_commit=remote.head)

    def landed() -> tuple[str, str | None] | None:
        return _find_landed_commit(api, repo_id, branch, create_pr, remote, {p: oids[p] for p in changed})

    info = _retry(commit, "commit", progress, landed=landed)
    if isinstance(info, tuple):  # the commit landed but its answer was lost
        oid, pr_num = info
        commit_url, pr_url = f"{repo_url}/commit/{oid}", (f"{repo_url}/discussions/{pr_num}" if pr_num else None)
    else:
        oid, commit_url, pr_url = info.oid, info.commit_url, info.pr_url
    return PushResult(**base, commit_oid=oid, commit_url=commit_url, pr_url=pr_url)


def _collect_files(output_dir: Path, with_model: bool) -> dict[str, Path]:
    if not output_dir.is_dir():
        raise HubError(f"run directory {output_dir} not found", "pass the output directory of a cardgen run")
    if not (output_dir / "README.md").is_file():
        raise HubError(f"{output_dir / 'README.md'} not found: there is no card to push",
                       f"render it with `cardgen card {output_dir}`")
    files: dict[str, Path] = {name: output_dir / name for name in CARD_FILES if (output_dir / name).is_file()}
    for path in sorted(output_dir.rglob("*")):
        rel = path.relative_to(output_dir)
        if not path.is_file() or any(p.startswith((".", "checkpoint-")) for p in rel.parts[:-1]):
            continue
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in IMAGE_PATTERNS):
            files[rel.as_posix()] = path
    if with_model:
        model = {p.name: p for p in sorted(output_dir.iterdir())
                 if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in MODEL_PATTERNS)}
        if not any(name.endswith(".safetensors") for name in model) or "config.json" not in model:
            hint = ("save the model with save_pretrained() (safetensors) into the run directory, "
                    "or push without --with-model to publish only the card")
            found = ", ".join(model) or "none"
            raise HubError(f"--with-model: no *.safetensors weights and config.json at the root of {output_dir} "
                           f"(found: {found})", hint)
        files.update(model)
    return files


def public_run_json(raw: bytes, output_dir: Path) -> bytes:
    """run.json as published: local absolute paths (data files, model directory, output and checkpoint
    directories) shortened so they do not reveal the machine's directory layout or user name.

    A path inside the run directory becomes relative to it, one under the working directory relative to that,
    one under the home directory ``~/...``, one in an installed package ``site-packages/...``, any other
    ``.../parent/name`` (keys too: data fingerprints are keyed by file). Only strings naming an existing path (or one in an existing directory) are touched, so
    texts that merely start with "/" stay as they are. The local run.json keeps the full paths.
    """
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw  # not ours to fix: pushed as it is
    roots = [(output_dir.resolve(), "."), (Path.cwd().resolve(), "."), (Path.home().resolve(), "~")]

    def shorten(value: str) -> str:
        if not value.startswith("/") or "\n" in value or len(value) > 4096:
            return value
        path = Path(value)
        try:
            if not (path.exists() or path.parent.is_dir()):
                return value
            path = path.resolve()
        except (OSError, ValueError):
            return value
        if len(path.parts) < 3:  # "/" or "/tmp": nothing to hide
            return value
        if "site-packages" in path.parts:
            return "/".join(path.parts[path.parts.index("site-packages"):])
        for root, label in roots:
            if path == root:
                return label
            if path.is_relative_to(root):
                rel = path.relative_to(root).as_posix()
                return rel if label == "." else f"{label}/{rel}"
        return ".../" + "/".join(path.parts[-2:])

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return shorten(value)
        if isinstance(value, dict):
            return {shorten(key): walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return (json.dumps(walk(record), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _card_to_push(local_card: str, remote_card: str | None, overwrite: bool, repo_id: str) -> str:
    if overwrite or remote_card is None or remote_card == local_card:
        return local_card
    _, remote_body = split_front_matter(remote_card)
    if not has_markers(remote_body):
        raise HubError(f"the card on {repo_id} has no cardgen sections (written by hand or another tool); "
                       "pushing would replace it",
                       "pass --overwrite to replace it, or add the generated sections to it by hand")
    merged = merge_generated(remote_card, local_card)
    return _merge_eval_results(remote_card, local_card, merged)


def _merge_eval_results(remote_card: str, local_card: str, merged: str) -> str:
    """metadata_update semantics for model-index: our results win, the Hub's other results are kept."""
    from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

    old_meta, _ = split_front_matter(remote_card)
    new_meta, _ = split_front_matter(local_card)
    if not old_meta.get("model-index") or not new_meta.get("model-index"):
        return merged
    try:
        _, old_results = model_index_to_eval_results(old_meta["model-index"])
        name, new_results = model_index_to_eval_results(new_meta["model-index"])
    except (KeyError, TypeError, ValueError):
        return merged  # a malformed model-index on the Hub: ours replaces it (the lint checks ours)
    kept = [old for old in old_results
            if not any(new.is_equal_except_value(old) for new in new_results)]
    if not kept:
        return merged
    meta, body = split_front_matter(merged)
    meta["model-index"] = eval_results_to_model_index(name, [*new_results, *kept])
    return join_front_matter(meta, body)


def _lint_card(card: str, what: str) -> None:
    metadata, _ = split_front_matter(card)
    problems = lint_card_metadata(metadata)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise HubError(f"{what}: metadata the Hub would reject: {'; '.join(problems[:3])}{more}",
                       "re-render the card with `cardgen card RUN_DIR`, or fix its YAML front matter")


def _validate_on_hub(api: Any, card: str, progress: Progress) -> None:
    # RepoCard.validate posts to huggingface_hub's import-time ENDPOINT, not to this HfApi's endpoint; HfApi's own
    # validation (the one create_commit runs) does. Calling it here fails before the repo is even created.
    validate = getattr(api, "_validate_yaml", None)
    if validate is None:  # create_commit validates anyway
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _retry(lambda: validate(card, repo_type="model"), "validate the card", progress)
        except ValueError as exc:
            if isinstance(exc, json.JSONDecodeError):
                raise
            reasons = "; ".join(line.lstrip("- ") for line in str(exc).splitlines()[1:] if line.strip())
            raise HubError(f"the Hub rejected the card's metadata: {reasons or exc}",
                           "fix README.md's YAML front matter, then push again") from None
    for warning in caught:
        progress.note(f"Hub: {' '.join(str(warning.message).split())}")


def _read_remote(api: Any, repo_id: str, branch: str, progress: Progress) -> _Remote:
    from huggingface_hub.errors import RepositoryNotFoundError
    from huggingface_hub.hf_api import RepoFile

    try:
        info = _retry(lambda: api.model_info(repo_id), "read the repo", progress)
    except RepositoryNotFoundError:
        return _Remote()
    refs = _retry(lambda: api.list_repo_refs(repo_id, include_pull_requests=True), "read the refs", progress)
    heads = {ref.name: ref.target_commit for ref in refs.branches}
    prs = {ref.ref: ref.target_commit for ref in (refs.pull_requests or [])}
    head = heads.get(branch) or prs.get(branch)
    remote = _Remote(exists=True, private=info.private, head=head or heads.get("main"),
                     branch_exists=head is not None, pr_refs=frozenset(prs))
    if remote.head is None:
        return remote
    tree = _retry(lambda: list(api.list_repo_tree(repo_id, revision=remote.head, recursive=True)),
                  "list the repo's files", progress)
    remote.files = {f.path: f.blob_id for f in tree if isinstance(f, RepoFile)}
    if "README.md" in remote.files:
        path = _retry(lambda: api.hf_hub_download(repo_id, "README.md", revision=remote.head),
                      "download the card", progress)
        remote.card = Path(path).read_text(encoding="utf-8")
    return remote


def _find_landed_commit(api: Any, repo_id: str, branch: str, create_pr: bool, before: _Remote,
                        expected: dict[str, str]) -> tuple[str, str | None] | None:
    """After a failed commit call: did the commit land anyway (answer lost)? -> (commit id, PR number)."""
    from huggingface_hub.hf_api import RepoFile

    refs = api.list_repo_refs(repo_id, include_pull_requests=True)
    if create_pr:
        candidates = [(r.target_commit, r.ref.rsplit("/", 1)[-1]) for r in (refs.pull_requests or [])
                      if r.ref not in before.pr_refs]
    else:
        candidates = [(r.target_commit, None) for r in refs.branches
                      if r.name == branch and r.target_commit != before.head]
        candidates += [(r.target_commit, None) for r in (refs.pull_requests or [])
                       if r.ref == branch and r.target_commit != before.head]
    for commit_id, pr_num in candidates:
        tree = {f.path: f.blob_id for f in api.list_repo_tree(repo_id, revision=commit_id, recursive=True)
                if isinstance(f, RepoFile)}
        if all(tree.get(path) == oid for path, oid in expected.items()):
            return commit_id, pr_num
    return None


# ------------------------------------------------------------------------------------------------ helpers
def _retry(call: Callable[[], T], what: str, progress: Progress,
           landed: Callable[[], Any] | None = None) -> T:
    """Run ``call``, retrying transient failures after each of RETRY_WAITS_S; ``landed`` (for commits) is
    asked before each retry whether the failed attempt took effect anyway, and its answer is returned if so."""
    for wait in (*RETRY_WAITS_S, None):
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


def _timeout_seconds() -> float:
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
def _request_timeout(seconds: float) -> Iterator[None]:
    """Give every request of huggingface_hub's shared client ``seconds`` to answer (10 s at most to connect),
    and put its own setting back afterwards."""
    try:
        import httpx2
        from huggingface_hub import get_session
    except ImportError:  # pragma: no cover - huggingface_hub<3 ships with httpx2
        yield
        return
    session = get_session()
    before = session.timeout
    session.timeout = httpx2.Timeout(seconds, connect=min(seconds, 10.0))
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
    if isinstance(exc, httpx2.TransportError):
        url = ""
        with contextlib.suppress(RuntimeError):  # an exception raised before the request was built
            url = str(exc.request.url)
        return "/preupload/" not in url
    return False


def _describe(exc: BaseException) -> str:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


def _to_hub_error(exc: Exception, repo_id: str, endpoint: str | None, timeout_s: float = HUB_TIMEOUT_S) -> HubError:
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
            return HubError(f"the Hub rejected the token (HTTP 401{detail})", _LOGIN_HINT)
        if isinstance(exc, RevisionNotFoundError):
            return HubError(f"revision not found in {repo_id} (HTTP {status})", "check --revision")
        if isinstance(exc, RepositoryNotFoundError) or status == 404:
            return HubError(f"{repo_id} not found or not visible with this token (HTTP {status})",
                            f"check --repo-id; {_LOGIN_HINT}")
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


def _scrub(exc: CardgenError, token: str | None) -> CardgenError:
    """The token never leaves in an error message, whatever the server echoed."""
    if token and (token in exc.message or (exc.hint and token in exc.hint)):
        exc.message = exc.message.replace(token, "***")
        exc.hint = exc.hint.replace(token, "***") if exc.hint else exc.hint
        exc.args = (exc.message,)
    return exc


def _resolve_token(token: str | None) -> str | None:
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def _check_repo_id(repo_id: str, flag: str = "--repo-id") -> None:
    if not _REPO_ID_RE.match(repo_id or "") or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        raise HubError(f"{flag} must look like NAMESPACE/NAME (letters, digits, '-', '_', '.'), got {repo_id!r}",
                       f"for example {flag} your-name/sentiment-minilm")


def _null_paths(value: Any, path: str) -> list[str]:
    if value is None:
        return [path or "(front matter)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _null_paths(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _null_paths(v, f"{path}[{i}]")]
    return []


def _git_blob_id(data: bytes) -> str:
    """The id git (and the Hub) gives a file's content: sha1 of ``blob <size>\\0<content>``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
