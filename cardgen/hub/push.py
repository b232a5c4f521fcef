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

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardgen.card.lint import hub_problems
from cardgen.card.markers import split_front_matter
from cardgen.console import NullProgress, Progress
from cardgen.errors import CardgenError, HubError
from cardgen.hub.payload import (
    card_to_push,
    collect_files,
    git_blob_id,
    public_adapter_config,
    public_run_json,
    with_run_record,
)
from cardgen.hub.transport import (
    LOGIN_HINT,
    check_repo_id,
    request_timeout,
    resolve_token,
    retry,
    scrub,
    timeout_seconds,
    to_hub_error,
    unreachable,
)

DRY_RUN_CONNECT_S = 2.0  # a dry run gives the Hub this long to accept the connection before showing what it can


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
        compared: Whether the files and the card were compared with the Hub (a dry run without network: no).
        unreachable: Why the Hub could not be reached, when it could not (dry runs only).
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
    compared: bool = True
    unreachable: str = ""

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
    check_repo_id(repo_id)
    if create_pr and revision is not None and revision.startswith("refs/pr/"):
        raise HubError("--create-pr needs a branch as --revision, not a pull request ref",
                       "drop --create-pr to add a commit to an existing pull request")
    token = resolve_token(token)
    if token is None and not dry_run:
        raise HubError("no Hugging Face token found", LOGIN_HINT)
    seconds = timeout_seconds()
    try:
        # A dry run only reads, and says so when the Hub cannot be reached: no retries, a short connect timeout.
        with request_timeout(seconds, connect=DRY_RUN_CONNECT_S if dry_run else 10.0):
            return _push(output_dir, repo_id, token=token, create_pr=create_pr, private=private, revision=revision,
                         with_model=with_model, commit_message=commit_message, dry_run=dry_run, overwrite=overwrite,
                         endpoint=endpoint, progress=progress)
    except CardgenError as exc:
        raise scrub(exc, token) from None
    except Exception as exc:
        raise scrub(to_hub_error(exc, repo_id, endpoint, seconds), token) from exc


def check_push_target(repo_id: str, token: str | None = None) -> None:
    """Before a long run that ends with a push: the repo id is well formed and a token is there.

    Raises:
        HubError: A malformed repo id, or no token (``--token``, ``HF_TOKEN`` or the login cache).
    """
    check_repo_id(repo_id, "--push-to")
    if resolve_token(token) is None:
        raise HubError("no Hugging Face token found, so the push at the end of the run would fail", LOGIN_HINT)


def _push(output_dir: Path, repo_id: str, *, token: str | None, create_pr: bool, private: bool,
          revision: str | None, with_model: bool, commit_message: str | None, dry_run: bool, overwrite: bool,
          endpoint: str | None, progress: Progress) -> PushResult:
    from huggingface_hub import CommitOperationAdd, HfApi

    from cardgen.version import __version__

    progress.stage(f"{'Checking' if dry_run else 'Pushing'} {output_dir} -> {repo_id}")
    local = collect_files(output_dir, with_model)
    local_card = (output_dir / "README.md").read_text(encoding="utf-8")
    _lint_card(local_card, "README.md")

    api = HfApi(endpoint=endpoint, token=token if token else False, library_name="cardgen",
                library_version=__version__)
    branch = revision or "main"
    try:
        remote = _read_remote(api, repo_id, branch, progress, waits=() if dry_run else None)
    except Exception as exc:
        if not dry_run or not unreachable(exc):  # a dry run without network shows what it can
            raise
        return _offline_dry_run(api, output_dir, repo_id, branch, local, local_card, str(unreachable(exc)), progress)
    if token is None and not remote.exists:
        progress.note(f"no token: {repo_id} looks new, but a private repo would look the same")
    if remote.exists and private and remote.private is False:
        raise HubError(f"{repo_id} already exists and is public; --private only applies to a new repo",
                       "change the repo's visibility in its settings on the Hub, or drop --private")
    if create_pr and remote.exists and not remote.branch_exists:
        raise HubError(f"branch '{branch}' not found in {repo_id}; a pull request needs an existing base branch",
                       "check --revision")

    repo_url = f"{api.endpoint.rstrip('/')}/{repo_id}"
    contents: dict[str, bytes] = {path: src.read_bytes() for path, src in local.items()}
    if "run.json" in contents:  # before the merge, so results that point at run.json match the Hub's own
        contents["run.json"] = public_run_json(contents["run.json"], output_dir)
        local_card = with_run_record(local_card, contents, output_dir, f"{repo_url}/blob/{branch}/run.json")
    card = card_to_push(local_card, remote.card, overwrite, repo_id)
    _lint_card(card, f"the card merged with the one on {repo_id}")
    _validate_on_hub(api, card, progress)
    contents["README.md"] = card.encode("utf-8")
    if "adapter_config.json" in contents:
        contents["adapter_config.json"] = public_adapter_config(contents["adapter_config.json"],
                                                                contents.get("run.json"))
    oids = {path: git_blob_id(data) for path, data in contents.items()}
    files = tuple(
        PushedFile(path, len(data), "new" if path not in remote.files
                   else "unchanged" if remote.files[path] == oids[path] else "changed")
        for path, data in contents.items()
    )
    diff = "".join(difflib.unified_diff(
        (remote.card or "").splitlines(keepends=True), card.splitlines(keepends=True),
        fromfile=f"{repo_id}@{branch}/README.md (Hub)", tofile="README.md (to push)"))
    base: dict[str, Any] = {"repo_id": repo_id, "repo_url": repo_url, "revision": branch, "files": files, "diff": diff,
            "private": remote.private if remote.exists else private, "created_repo": not remote.exists}
    if dry_run:
        return PushResult(**base, dry_run=True)
    if remote.exists and remote.branch_exists and all(f.status == "unchanged" for f in files):
        progress.note("everything is already on the Hub: no commit made")
        return PushResult(**base, commit_oid=remote.head, no_change=True,
                          commit_url=f"{repo_url}/commit/{remote.head}" if remote.head else None)

    remote = _ensure_target(api, repo_id, branch, remote, private=private, create_pr=create_pr, progress=progress)
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

    info = retry(commit, "commit", progress, landed=landed)
    if isinstance(info, tuple):  # the commit landed but its answer was lost
        oid, pr_num = info
        commit_url, pr_url = f"{repo_url}/commit/{oid}", (f"{repo_url}/discussions/{pr_num}" if pr_num else None)
    else:
        oid, commit_url, pr_url = info.oid, info.commit_url, info.pr_url
    return PushResult(**base, commit_oid=oid, commit_url=commit_url, pr_url=pr_url)


def _offline_dry_run(api: Any, output_dir: Path, repo_id: str, branch: str, local: dict[str, Path], card: str,
                     reason: str, progress: Progress) -> PushResult:
    """A dry run that could not reach the Hub: the files and the card as they would be pushed to a new repo,
    checked locally only, and said so."""
    where = api.endpoint.rstrip("/")
    progress.note(f"cannot reach the Hub at {where} ({reason}): files and card not compared with {repo_id}")
    contents = {path: src.read_bytes() for path, src in local.items()}
    if "run.json" in contents:
        contents["run.json"] = public_run_json(contents["run.json"], output_dir)
        card = with_run_record(card, contents, output_dir, f"{where}/{repo_id}/blob/{branch}/run.json")
    contents["README.md"] = card.encode("utf-8")
    files = tuple(PushedFile(path, len(data), "not compared") for path, data in contents.items())
    return PushResult(repo_id=repo_id, repo_url=f"{where}/{repo_id}", revision=branch, files=files, dry_run=True,
                      compared=False, unreachable=f"cannot reach the Hub at {where} ({reason})")


def _ensure_target(api: Any, repo_id: str, branch: str, remote: _Remote, *, private: bool, create_pr: bool,
                   progress: Progress) -> _Remote:
    """Create the repo and the branch the commit goes to when they do not exist yet; the remote as it is now."""
    if not remote.exists:
        progress.note(f"creating {'private ' if private else ''}repo {repo_id}")
        retry(lambda: api.create_repo(repo_id, private=private, exist_ok=True), "create the repo", progress)
        remote = _read_remote(api, repo_id, branch, progress)
    if not remote.branch_exists and not create_pr and not branch.startswith("refs/pr/"):
        progress.note(f"creating branch '{branch}'")
        retry(lambda: api.create_branch(repo_id, branch=branch, exist_ok=True), "create the branch", progress)
        remote = _read_remote(api, repo_id, branch, progress)
    return remote


def _lint_card(card: str, what: str) -> None:
    metadata, _ = split_front_matter(card)
    problems = hub_problems(metadata)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise HubError(f"{what}: metadata the Hub would reject: {'; '.join(problems[:3])}{more}",
                       "re-render the card with `cardgen card RUN_DIR`, or fix its YAML front matter")


def _validate_on_hub(api: Any, card: str, progress: Progress) -> None:
    from cardgen.hub.validate import validate_on_hub

    verdict = validate_on_hub(api, card, progress)
    if verdict.errors:
        raise HubError(f"the Hub rejected the card's metadata: {'; '.join(verdict.errors)}",
                       "fix README.md's YAML front matter, then push again")
    for warning in verdict.warnings:
        progress.note(f"Hub: {warning}")


def _read_remote(api: Any, repo_id: str, branch: str, progress: Progress,
                 waits: tuple[float, ...] | None = None) -> _Remote:
    from huggingface_hub.errors import RepositoryNotFoundError
    from huggingface_hub.hf_api import RepoFile

    try:
        info = retry(lambda: api.model_info(repo_id), "read the repo", progress, waits=waits)
    except RepositoryNotFoundError:
        return _Remote()
    refs = retry(lambda: api.list_repo_refs(repo_id, include_pull_requests=True), "read the refs", progress,
                 waits=waits)
    heads = {ref.name: ref.target_commit for ref in refs.branches}
    prs = {ref.ref: ref.target_commit for ref in (refs.pull_requests or [])}
    head = heads.get(branch) or prs.get(branch)
    remote = _Remote(exists=True, private=info.private, head=head or heads.get("main"),
                     branch_exists=head is not None, pr_refs=frozenset(prs))
    if remote.head is None:
        return remote
    tree = retry(lambda: list(api.list_repo_tree(repo_id, revision=remote.head, recursive=True)),
                  "list the repo's files", progress, waits=waits)
    remote.files = {f.path: f.blob_id for f in tree if isinstance(f, RepoFile)}
    if "README.md" in remote.files:
        path = retry(lambda: api.hf_hub_download(repo_id, "README.md", revision=remote.head),
                      "download the card", progress, waits=waits)
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
