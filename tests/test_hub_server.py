"""The test Hub itself, driven by the real huggingface_hub client (so test_push.py can trust it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import HubServer, git_blob_sha1, validate_card_yaml

TOKEN, READ_TOKEN = "hf_server_test_write", "hf_server_test_read"


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    server = HubServer(tokens={TOKEN: "alice"}, read_tokens={READ_TOKEN: "alice"}).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from huggingface_hub import constants

    hub.reset()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    yield
    assert hub.server_errors == []


def api(hub: HubServer, token: str | bool = TOKEN):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=token)


def test_repo_commits_refs_tree_and_download(hub: HubServer, tmp_path: Path) -> None:
    from huggingface_hub import CommitOperationAdd

    client = api(hub)
    url = client.create_repo("alice/m")
    assert url == f"{hub.url}/alice/m" and client.create_repo("alice/m", exist_ok=True) == url
    info = client.create_commit("alice/m", [CommitOperationAdd("dir/a.txt", b"A"), CommitOperationAdd("b", b"B")],
                                commit_message="add files")
    assert hub.repos["alice/m"].branches["main"] == info.oid
    assert client.model_info("alice/m").sha == info.oid
    assert [c.title for c in client.list_repo_commits("alice/m")] == ["add files", "initial commit"]
    assert sorted(client.list_repo_files("alice/m")) == [".gitattributes", "b", "dir/a.txt"]
    tree = {f.path: getattr(f, "blob_id", None) for f in client.list_repo_tree("alice/m", recursive=True)}
    assert tree["dir/a.txt"] == git_blob_sha1(b"A") and "dir" in tree
    path = client.hf_hub_download("alice/m", "dir/a.txt", revision=info.oid[:7])
    assert Path(path).read_bytes() == b"A"


@pytest.mark.parametrize("xet_disabled", [True, False])
def test_both_pull_request_paths(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 xet_disabled: bool) -> None:
    """upload_folder opens a PR with ?create_pr=1 without hf_xet, and discussion-then-commit with it."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", xet_disabled)
    client = api(hub)
    client.create_repo("alice/m")
    main = hub.repos["alice/m"].branches["main"]
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "x.txt").write_text("x")
    info = client.upload_folder(repo_id="alice/m", folder_path=tmp_path / "f", create_pr=True)
    assert info.pr_url == f"{hub.url}/alice/m/discussions/1" and info.pr_revision == "refs/pr/1"
    assert hub.repos["alice/m"].branches["main"] == main
    assert hub.files("alice/m", "refs/pr/1")["x.txt"] == b"x"
    used_discussions = any(p.endswith("/discussions") for _, p, _ in hub.requests)
    assert used_discussions is (not xet_disabled)


def test_tokens_and_privacy(hub: HubServer) -> None:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    api(hub).create_repo("alice/secret", private=True)
    with pytest.raises(RepositoryNotFoundError):
        api(hub, token=False).model_info("alice/secret")
    with pytest.raises(HfHubHTTPError) as bad:
        api(hub, token="hf_wrong").model_info("alice/secret")
    assert bad.value.response.status_code == 401 and not isinstance(bad.value, RepositoryNotFoundError)
    with pytest.raises(HfHubHTTPError) as read_only:
        api(hub, token=READ_TOKEN).create_repo("alice/other")
    assert read_only.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as other_ns:
        api(hub).create_repo("bob/m")
    assert other_ns.value.response.status_code == 403
    assert api(hub, token=READ_TOKEN).model_info("alice/secret").private is True


def test_parent_commit_guard(hub: HubServer) -> None:
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    client = api(hub)
    client.create_repo("alice/m")
    old = hub.repos["alice/m"].branches["main"]
    hub.commit_files("alice/m", {"x": b"1"})
    with pytest.raises(HfHubHTTPError) as info:
        client.create_commit("alice/m", [CommitOperationAdd("y", b"2")], commit_message="m", parent_commit=old)
    assert info.value.response.status_code == 412


def test_failure_injection(hub: HubServer) -> None:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    client = api(hub)
    failure = hub.fail("POST", r"/api/repos/create", status=500, times=1)
    with pytest.raises(HfHubHTTPError):
        client.create_repo("alice/m")
    client.create_repo("alice/m")  # only once
    assert failure.hits == 1 and "alice/m" in hub.repos

    hub.fail("GET", r"^/api/models/alice/m$", mode="drop", times=1)
    with pytest.raises(httpx2.TransportError):
        client.model_info("alice/m")
    hub.fail("GET", r"^/api/models/alice/m$", mode="slow", delay=0.3, times=1)
    start = time.perf_counter()
    client.model_info("alice/m")
    assert time.perf_counter() - start >= 0.3


def test_validate_yaml_rules() -> None:
    assert validate_card_yaml("---\nlicense: mit\n---\nbody") == []
    assert validate_card_yaml("no front matter") == []
    assert validate_card_yaml("---\nlicense: null\n---\n") == ['"license" must not be null']
    assert "must be one of" in validate_card_yaml("---\nlicense: nope\n---\n")[0]
    errors = validate_card_yaml("---\nmodel-index:\n- name: m\n  results:\n  - task: {}\n    metrics: [{}]\n---\n")
    assert errors == [
        '"model-index[0].results[0].task.type" is required',
        '"model-index[0].results[0].dataset.type" is required',
        '"model-index[0].results[0].dataset.name" is required',
        '"model-index[0].results[0].metrics[0].type" is required',
        '"model-index[0].results[0].metrics[0].value" is required',
    ]
