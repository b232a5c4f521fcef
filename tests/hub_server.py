"""A small Hub-compatible HTTP server for tests: the real ``huggingface_hub`` client talks to it via HF_ENDPOINT.

Standard library only (ThreadingHTTPServer on 127.0.0.1, port 0). It keeps model repos in memory with git-like
history: every commit has an id, a parent and a full snapshot of its files; branches and ``refs/pr/N`` point at
commits. It checks tokens (a valid write token, a read-only token; anything else answers 401 like the Hub does),
validates card metadata like the Hub (no nulls, required model-index fields) and can fail on purpose::

    hub = HubServer(tokens={"hf_write": "alice"}); hub.start()
    hub.fail("POST", r"/commit/", status=500, times=1)     # 500 once on the commit route
    hub.fail("POST", r"/commit/", status=500)              # 500 always
    hub.fail("POST", r"/preupload/", mode="drop")          # close the connection without an answer
    hub.fail("GET", r"/api/models/", mode="slow", delay=1)  # answer late
    hub.fail("POST", r"/commit/", mode="drop", when="after", times=1)  # commit lands, answer is lost

Endpoints and answer shapes follow ../shared/HUB.md. Not covered: LFS and Xet transfers (preupload always answers
``uploadMode: "regular"``, so files travel base64 inside the commit), datasets/spaces, tags, merges of PRs,
gated repos, rate limits, pagination (one page), ``.gitattributes`` rules and gitignore.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


# A few of the license ids the Hub accepts (it rejects any other string).
KNOWN_LICENSES = frozenset({"apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "gpl-3.0", "llama3",
                            "openrail", "other", "unknown"})


def git_blob_sha1(content: bytes) -> str:
    """The git blob id of ``content``: what the Hub calls a regular file's oid."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Commit:
    id: str
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    files: dict[str, bytes]


@dataclass
class PullRequest:
    num: int
    title: str
    base: str
    author: str
    created_at: str
    status: str = "open"

    @property
    def ref(self) -> str:
        return f"refs/pr/{self.num}"


@dataclass
class Repo:
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    prs: dict[int, PullRequest] = field(default_factory=dict)
    pr_heads: dict[int, str] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/", 1)[0]

    def resolve(self, rev: str) -> str | None:
        """Branch, ``refs/heads/NAME``, ``refs/pr/N`` or a commit id (7+ hex digits) -> commit id."""
        if rev.startswith("refs/heads/"):
            rev = rev[len("refs/heads/"):]
        if rev in self.branches:
            return self.branches[rev]
        m = re.fullmatch(r"refs/pr/(\d+)", rev)
        if m:
            return self.pr_heads.get(int(m.group(1)))
        if re.fullmatch(r"[0-9a-f]{7,40}", rev):
            hits = [cid for cid in self.commits if cid.startswith(rev)]
            if len(hits) == 1:
                return hits[0]
        return None

    def history(self, commit_id: str) -> list[Commit]:
        out = []
        cid: str | None = commit_id
        while cid is not None:
            commit = self.commits[cid]
            out.append(commit)
            cid = commit.parent
        return out


@dataclass
class Failure:
    method: str
    pattern: re.Pattern[str]
    mode: str  # "status" | "drop" | "slow"
    status: int
    times: int | None  # None: always
    delay: float
    when: str  # "before" (nothing happens) | "after" (the request is handled, then the answer fails)
    hits: int = 0


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra or {}


class HubServer:
    """The in-memory Hub. ``start()`` it, point HF_ENDPOINT at ``url``, ``stop()`` it at the end.

    Args:
        tokens: Write tokens and the user each belongs to.
        read_tokens: Read-only tokens and their users (a write answers 403).
        orgs: Organisation name -> members who may write to it.
    """

    def __init__(
        self,
        tokens: dict[str, str] | None = None,
        read_tokens: dict[str, str] | None = None,
        orgs: dict[str, set[str]] | None = None,
    ) -> None:
        self.tokens = dict(tokens or {})
        self.read_tokens = dict(read_tokens or {})
        self.orgs = {k: set(v) for k, v in (orgs or {}).items()}
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status); headers are never kept
        self.server_errors: list[str] = []  # tracebacks of bugs in this server
        self.lock = threading.RLock()
        self._failures: list[Failure] = []
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget all repos, failures and the request log (between tests)."""
        with self.lock:
            self.repos.clear()
            self._failures.clear()
            self.requests.clear()
            self.server_errors.clear()

    # ----------------------------------------------------------------- failure injection
    def fail(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 500,
        times: int | None = None,
        mode: str = "status",
        delay: float = 0.0,
        when: str = "before",
    ) -> Failure:
        """Make matching requests fail: ``mode`` "status" answers ``status``, "drop" closes the connection
        without an answer, "slow" waits ``delay`` seconds and then answers normally. ``times=None``: always.
        ``when="after"`` handles the request first (a commit lands) and then fails the answer."""
        assert mode in ("status", "drop", "slow") and when in ("before", "after")
        failure = Failure(method.upper(), re.compile(path_regex), mode, status, times, delay, when)
        with self.lock:
            self._failures.append(failure)
        return failure

    def clear_failures(self) -> None:
        with self.lock:
            self._failures.clear()

    def _match_failure(self, method: str, path: str) -> Failure | None:
        with self.lock:
            for failure in self._failures:
                if failure.method in (method, "*") and failure.pattern.search(path):
                    if failure.times is not None and failure.hits >= failure.times:
                        continue
                    failure.hits += 1
                    return failure
        return None

    # ----------------------------------------------------------------- state helpers for tests
    def create_repo(self, repo_id: str, *, private: bool = False, author: str = "system") -> Repo:
        """Create a repo directly (as if someone else made it), with the Hub's initial commit."""
        with self.lock:
            repo = Repo(repo_id=repo_id, private=private, created_at=_now())
            self.repos[repo_id] = repo
            commit = self._new_commit(repo, None, "initial commit", "", author, {".gitattributes": GITATTRIBUTES})
            repo.branches["main"] = commit.id
            return repo

    def commit_files(self, repo_id: str, files: dict[str, bytes], message: str = "edit", branch: str = "main") -> str:
        """Commit ``files`` (added or replaced) onto ``branch`` directly, as a human on the website would."""
        with self.lock:
            repo = self.repos[repo_id]
            parent = repo.branches[branch]
            snapshot = dict(repo.commits[parent].files)
            snapshot.update(files)
            commit = self._new_commit(repo, parent, message, "", "someone", snapshot)
            repo.branches[branch] = commit.id
            return commit.id

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        """The files of ``repo_id`` at ``rev`` (a copy)."""
        with self.lock:
            repo = self.repos[repo_id]
            cid = repo.resolve(rev)
            assert cid is not None, f"no revision {rev} in {repo_id}"
            return dict(repo.commits[cid].files)

    def commit_count(self, repo_id: str, rev: str = "main") -> int:
        with self.lock:
            repo = self.repos[repo_id]
            cid = repo.resolve(rev)
            return 0 if cid is None else len(repo.history(cid))

    def _new_commit(self, repo: Repo, parent: str | None, title: str, message: str, author: str,
                    files: dict[str, bytes]) -> Commit:
        self._counter += 1
        seed = json.dumps([repo.repo_id, parent, title, self._counter, sorted((p, git_blob_sha1(c))
                                                                              for p, c in files.items())])
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, title, message, author, _now(), files)
        repo.commits[commit.id] = commit
        return commit


# --------------------------------------------------------------------------------------------- validation
def _front_matter(content: str) -> Any:
    m = re.match(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))", content)
    if not m:
        return {}
    return yaml.safe_load(m.group(2)) or {}


def _find_nulls(value: Any, path: str) -> list[str]:
    if value is None:
        return [path or "(root)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _find_nulls(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _find_nulls(v, f"{path}[{i}]")]
    return []


def validate_card_yaml(content: str) -> list[str]:
    """What the test Hub rejects in a card's front matter (a subset of the Hub's own checks)."""
    try:
        meta = _front_matter(content)
    except yaml.YAMLError as exc:
        return [f"Invalid YAML: {exc}"]
    if not isinstance(meta, dict):
        return ["Metadata must be a mapping"]
    errors = [f'"{p}" must not be null' for p in _find_nulls(meta, "")]
    license_id = meta.get("license")
    if isinstance(license_id, str) and license_id not in KNOWN_LICENSES:
        errors.append(f'"license" must be one of [{", ".join(sorted(KNOWN_LICENSES))}]')
    model_index = meta.get("model-index")
    if model_index is not None:
        if not isinstance(model_index, list):
            return errors + ['"model-index" must be an array']
        for i, entry in enumerate(model_index):
            if not isinstance(entry, dict) or not entry.get("name"):
                errors.append(f'"model-index[{i}].name" is required')
                continue
            for j, result in enumerate(entry.get("results") or []):
                where = f"model-index[{i}].results[{j}]"
                if not (result.get("task") or {}).get("type"):
                    errors.append(f'"{where}.task.type" is required')
                dataset = result.get("dataset") or {}
                for key in ("type", "name"):
                    if not dataset.get(key):
                        errors.append(f'"{where}.dataset.{key}" is required')
                metrics = result.get("metrics")
                if not metrics:
                    errors.append(f'"{where}.metrics" must contain at least one metric')
                for k, metric in enumerate(metrics or []):
                    if not metric.get("type"):
                        errors.append(f'"{where}.metrics[{k}].type" is required')
                    if "value" not in metric:
                        errors.append(f'"{where}.metrics[{k}].value" is required')
    return errors


# --------------------------------------------------------------------------------------------- handler
class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped connections are on purpose; a real bug shows up as a failing client call


_REPO_API = re.compile(r"^/api/models/([^/]+)/([^/]+)(?:/(.*))?$")
_RESOLVE = re.compile(r"^/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    # Every verb goes through one dispatcher.
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---------------------------------------------------------------- plumbing
    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""

        failure = self.hub._match_failure(method, path)
        if failure is not None and failure.mode == "slow":
            time.sleep(failure.delay)
            failure = None
        if failure is not None and failure.when == "before":
            self._fail(method, path, failure)
            return
        try:
            status, payload, headers = self._route(method, path, query, body)
        except HttpError as err:
            status, payload = err.status, {"error": err.message, **err.extra}
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
        except Exception:  # a bug in this server: answer 500 and keep it for the test to report
            with self.hub.lock:
                self.hub.server_errors.append(traceback.format_exc())
            status, payload, headers = 500, {"error": "test hub crashed"}, {}
        if failure is not None:  # when="after": the work is done, the answer fails
            self._fail(method, path, failure)
            return
        self._send(method, path, status, payload, headers)

    def _fail(self, method: str, path: str, failure: Failure) -> None:
        if failure.mode == "drop":
            with self.hub.lock:
                self.hub.requests.append((method, path, 0))
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(method, path, failure.status, {"error": f"Injected failure (HTTP {failure.status})"}, {})

    def _send(self, method: str, path: str, status: int, payload: Any, headers: dict[str, str]) -> None:
        with self.hub.lock:
            self.hub.requests.append((method, path, status))
        if isinstance(payload, bytes):
            data = payload
            content_type = "application/octet-stream"
        else:
            data = json.dumps(payload).encode()
            content_type = "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Id", f"test-{len(self.hub.requests)}")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    # ---------------------------------------------------------------- auth
    def _user(self) -> tuple[str | None, bool]:
        """(user, can_write) for the Authorization header; a token the Hub does not know answers 401."""
        auth = self.headers.get("Authorization") or ""
        if not auth:
            return None, False
        token = auth.removeprefix("Bearer ").strip()
        if token in self.hub.tokens:
            return self.hub.tokens[token], True
        if token in self.hub.read_tokens:
            return self.hub.read_tokens[token], False
        raise HttpError(401, "Invalid credentials in Authorization header")

    def _may_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (user == namespace or user in self.hub.orgs.get(namespace, set()))

    def _repo(self, repo_id: str, *, write: bool = False) -> Repo:
        user, can_write = self._user()
        repo = self.hub.repos.get(repo_id)
        visible = repo is not None and (not repo.private or self._may_write(user, repo.namespace))
        if not visible:
            if user is None:  # the Hub answers 401 when it cannot tell "missing" from "private"
                raise HttpError(401, "Repository not found", "RepoNotFound")
            raise HttpError(404, "Repository not found", "RepoNotFound")
        assert repo is not None
        if write:
            if user is None:
                raise HttpError(401, "You must be authenticated to write to a repo")
            if not can_write or not self._may_write(user, repo.namespace):
                raise HttpError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    @staticmethod
    def _commit_at(repo: Repo, rev: str) -> Commit:
        cid = repo.resolve(unquote(rev))
        if cid is None:
            raise HttpError(404, f"Invalid rev id: {unquote(rev)}", "RevisionNotFound")
        return repo.commits[cid]

    # ---------------------------------------------------------------- routes
    def _route(self, method: str, path: str, query: dict[str, str], body: bytes):
        hub = self.hub
        with hub.lock:
            if path == "/api/whoami-v2" and method == "GET":
                user, can_write = self._user()
                if user is None:
                    raise HttpError(401, "Invalid credentials in Authorization header")
                role = "write" if can_write else "read"
                return 200, {"type": "user", "name": user, "orgs": [{"name": o} for o, m in hub.orgs.items()
                                                                    if user in m],
                             "auth": {"type": "access_token", "accessToken": {"role": role}}}, {}
            if path == "/api/repos/create" and method == "POST":
                return self._create_repo(json.loads(body or b"{}"))
            if path == "/api/validate-yaml" and method == "POST":
                self._user()
                errors = validate_card_yaml(json.loads(body or b"{}").get("content", ""))
                if errors:
                    return 400, {"errors": [{"message": e} for e in errors], "warnings": []}, {}
                return 200, {"errors": [], "warnings": []}, {}
            m = _REPO_API.match(path)
            if m:
                repo_id = f"{unquote(m.group(1))}/{unquote(m.group(2))}"
                rest = [unquote(s) for s in (m.group(3) or "").split("/")] if m.group(3) else []
                return self._repo_api(method, repo_id, rest, query, body)
            m = _RESOLVE.match(path)
            if m and method in ("GET", "HEAD"):
                repo_id = f"{unquote(m.group(1))}/{unquote(m.group(2))}"
                return self._resolve(repo_id, m.group(3), unquote(m.group(4)))
            if m := re.match(r"^/([^/]+)/([^/]+)/discussions/(\d+)$", path):
                return 200, b"discussion page", {}
        raise HttpError(404, f"Not found: {method} {path}")

    def _create_repo(self, payload: dict[str, Any]):
        user, can_write = self._user()
        if user is None:
            raise HttpError(401, "You must be authenticated to create a repo")
        if payload.get("type", "model") != "model":
            raise HttpError(400, "Only model repos are supported by the test hub")
        namespace = payload.get("organization") or user
        name = payload.get("name") or ""
        if not re.fullmatch(r"[\w.-]{1,96}", name) or name.startswith((".", "-")):
            raise HttpError(400, f"Invalid repo name: {name!r}")
        repo_id = f"{namespace}/{name}"
        url = f"{self.hub.url}/{repo_id}"
        if not can_write or not self._may_write(user, namespace):
            raise HttpError(403, f"You don't have the rights to create a model under the namespace {namespace}")
        if repo_id in self.hub.repos:
            raise HttpError(409, "You already created this model repo", extra={"url": url})
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.hub.create_repo(repo_id, private=private, author=user)
        return 200, {"url": url, "name": repo_id, "id": repo_id}, {}

    def _repo_api(self, method: str, repo_id: str, rest: list[str], query: dict[str, str], body: bytes):
        head = rest[0] if rest else ""
        if method == "GET" and (not rest or head == "revision"):
            repo = self._repo(repo_id)
            commit = self._commit_at(repo, "/".join(rest[1:]) if rest else "main")
            return 200, self._model_info(repo, commit), {}
        if method == "GET" and head == "refs":
            repo = self._repo(repo_id)
            out: dict[str, Any] = {
                "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in repo.branches.items()],
                "tags": [], "converts": [],
            }
            if query.get("include_prs") in ("1", "true", "True"):
                out["pullRequests"] = [{"name": pr.ref, "ref": pr.ref, "targetCommit": repo.pr_heads[n]}
                                       for n, pr in repo.prs.items()]
            return 200, out, {}
        if method == "GET" and head == "commits":
            repo = self._repo(repo_id)
            commit = self._commit_at(repo, "/".join(rest[1:]) or "main")
            return 200, [{"id": c.id, "title": c.title, "message": c.message, "authors": [{"user": c.author}],
                          "date": c.date} for c in repo.history(commit.id)], {}
        if method == "GET" and head == "tree":
            repo = self._repo(repo_id)
            commit = self._commit_at(repo, rest[1] if len(rest) > 1 else "main")
            return 200, self._tree(commit, "/".join(rest[2:]), query.get("recursive") in ("1", "true", "True")), {}
        if method == "POST" and head == "paths-info":
            repo = self._repo(repo_id)
            commit = self._commit_at(repo, rest[1] if len(rest) > 1 else "main")
            form = parse_qs(body.decode())
            paths = form.get("paths", []) if form else (json.loads(body or b"{}").get("paths") or [])
            return 200, [{"type": "file", "path": p, "oid": git_blob_sha1(commit.files[p]),
                          "size": len(commit.files[p])} for p in paths if p in commit.files], {}
        if method == "POST" and head == "preupload":
            repo = self._repo(repo_id, write=True)
            rev = "/".join(rest[1:]) or "main"
            files = self._commit_at(repo, rev).files if repo.resolve(rev) else {}
            wanted = json.loads(body or b"{}").get("files", [])
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                    "oid": git_blob_sha1(files[f["path"]]) if f["path"] in files else None}
                                   for f in wanted]}, {}
        if method == "POST" and head == "commit":
            repo = self._repo(repo_id, write=True)
            return self._commit(repo, "/".join(rest[1:]) or "main", query.get("create_pr") == "1", body)
        if method == "POST" and head == "branch" and len(rest) > 1:
            repo = self._repo(repo_id, write=True)
            branch = "/".join(rest[1:])
            if branch in repo.branches:
                raise HttpError(409, f"Reference refs/heads/{branch} already exists")
            start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
            repo.branches[branch] = self._commit_at(repo, start).id
            return 200, {}, {}
        if method == "POST" and head == "discussions" and len(rest) == 1:
            repo = self._repo(repo_id, write=True)
            payload = json.loads(body or b"{}")
            if not payload.get("pullRequest"):
                raise HttpError(400, "The test hub only supports pull requests")
            user, _ = self._user()
            num = self._open_pr(repo, payload.get("title") or "PR", "main", repo.branches["main"], user or "?")
            return 200, {"num": num, "url": f"{self.hub.url}/{repo_id}/discussions/{num}", "pullRequest": True}, {}
        if method == "GET" and head == "discussions" and len(rest) == 2:
            repo = self._repo(repo_id)
            pr = repo.prs.get(int(rest[1]))
            if pr is None:
                raise HttpError(404, "Discussion not found")
            return 200, {"num": pr.num, "title": pr.title, "status": pr.status, "isPullRequest": True,
                         "createdAt": pr.created_at, "author": {"name": pr.author},
                         "repo": {"name": repo_id, "type": "model"}, "changes": {"base": f"refs/heads/{pr.base}"},
                         "filesWithConflicts": [], "events": [], "diff": ""}, {}
        raise HttpError(404, f"Not found: {method} /api/models/{repo_id}/{'/'.join(rest)}")

    def _open_pr(self, repo: Repo, title: str, base: str, head: str, author: str) -> int:
        num = max([*repo.prs, 0]) + 1
        repo.prs[num] = PullRequest(num, title, base, author, _now())
        repo.pr_heads[num] = head
        return num

    def _model_info(self, repo: Repo, commit: Commit) -> dict[str, Any]:
        card = _front_matter(commit.files.get("README.md", b"").decode("utf-8", "replace")) \
            if "README.md" in commit.files else {}
        return {
            "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.namespace, "sha": commit.id,
            "private": repo.private, "disabled": False, "gated": False, "lastModified": commit.date,
            "createdAt": repo.created_at, "tags": [], "downloads": 0, "likes": 0,
            "cardData": card if isinstance(card, dict) else None,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }

    @staticmethod
    def _tree(commit: Commit, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = prefix.strip("/")
        base = f"{prefix}/" if prefix else ""
        out: list[dict[str, Any]] = []
        folders: set[str] = set()
        for path in sorted(commit.files):
            if not path.startswith(base):
                continue
            rel = path[len(base):]
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                folder = base + "/".join(parts[:depth])
                if folder not in folders and (recursive or depth == 1):
                    folders.add(folder)
                    out.append({"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                "size": 0})
            if recursive or len(parts) == 1:
                content = commit.files[path]
                out.append({"type": "file", "path": path, "oid": git_blob_sha1(content), "size": len(content)})
        if prefix and not out:
            raise HttpError(404, f"Entry not found: {prefix}", "EntryNotFound")
        return out

    def _commit(self, repo: Repo, rev: str, create_pr: bool, body: bytes):
        header: dict[str, Any] = {}
        changes: list[tuple[str, str, bytes | None]] = []
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HttpError(400, "Only base64 file content is supported")
                changes.append(("add", value["path"], base64.b64decode(value["content"])))
            elif key in ("deletedFile", "deletedFolder"):
                changes.append((key, value["path"], None))
            elif key == "lfsFile":
                raise HttpError(422, "LFS files are not supported by the test hub (preupload answers 'regular')")
            else:
                raise HttpError(400, f"Unknown commit operation: {key}")
        if not header.get("summary"):
            raise HttpError(400, "A commit needs a summary")
        user, _ = self._user()
        base_rev = unquote(rev)
        is_pr_ref = re.fullmatch(r"refs/pr/(\d+)", base_rev)
        if create_pr and base_rev not in repo.branches:
            raise HttpError(404, f"Invalid rev id: {base_rev}", "RevisionNotFound")
        head = repo.resolve(base_rev)
        if head is None or (not is_pr_ref and base_rev not in repo.branches):
            raise HttpError(404, f"Invalid rev id: {base_rev}", "RevisionNotFound")
        parent = header.get("parentCommit")
        if parent is not None:
            resolved = repo.resolve(parent)
            if resolved is None:
                raise HttpError(404, f"Invalid parent commit: {parent}", "RevisionNotFound")
            if not create_pr and resolved != head:
                raise HttpError(412, "A commit has happened since. Please refresh and try again.")
            head = resolved
        snapshot = dict(repo.commits[head].files)
        for kind, path, content in changes:
            if kind == "add":
                assert content is not None
                snapshot[path] = content
            elif kind == "deletedFile":
                if path not in snapshot:
                    raise HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del snapshot[path]
            else:
                folder = path.rstrip("/") + "/"
                for p in [p for p in snapshot if p.startswith(folder)]:
                    del snapshot[p]
        commit = self.hub._new_commit(repo, head, header["summary"], header.get("description") or "",
                                      user or "?", snapshot)
        pr_url = None
        if create_pr:
            num = self._open_pr(repo, header["summary"], base_rev, commit.id, user or "?")
            pr_url = f"{self.hub.url}/{repo.repo_id}/discussions/{num}"
        elif is_pr_ref:
            repo.pr_heads[int(is_pr_ref.group(1))] = commit.id
        else:
            repo.branches[base_rev] = commit.id
        return 200, {"success": True, "commitOid": commit.id, "commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/"
                     f"{commit.id}", "pullRequestUrl": pr_url}, {}

    def _resolve(self, repo_id: str, rev: str, path: str):
        repo = self._repo(repo_id)
        commit = self._commit_at(repo, rev)
        if path not in commit.files:
            raise HttpError(404, "Entry not found", "EntryNotFound")
        content = commit.files[path]
        return 200, content, {"X-Repo-Commit": commit.id, "ETag": f'"{git_blob_sha1(content)}"'}
