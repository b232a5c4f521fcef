"""`cardgen push` against a real local Hub server (tests/hub_server.py) with the real huggingface_hub client.

The CLI runs as a subprocess with HF_ENDPOINT etc. in its environment (huggingface_hub reads them at import);
library calls pass ``endpoint=`` explicitly. Every push test runs with HF_HUB_DISABLE_XET=1 and without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hub_server import HubServer

import cardgen.hub.push as push_module
import cardgen.hub.transport as transport
from cardgen.card.markers import section, split_front_matter
from cardgen.errors import HubError
from cardgen.hub.push import PushResult, push

TOKEN = "hf_cardgenTESTtoken_4f1c2a9e77d0b3"  # unique, so a leak is easy to grep for
READ_TOKEN = "hf_cardgenREADonly_9b8a7c6d5e4f"
BAD_TOKEN = "hf_cardgenBADtoken_0000deadbeef"
USER = "alice"
REPO = f"{USER}/tiny-bert-sentiment"
ROOT = Path(__file__).resolve().parents[1]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "movie", "film", "is", "was", "great", "good",
         "fine", "bad", "awful", "boring", "plot", "acting", "not"]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def hub() -> Iterator[HubServer]:
    server = HubServer(tokens={TOKEN: USER}, read_tokens={READ_TOKEN: USER}, orgs={"acme": {USER}}).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean_hub(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh Hub, fast retries, and an in-process huggingface_hub that touches only tmp_path."""
    from huggingface_hub import constants

    hub.reset()
    monkeypatch.setattr(transport, "RETRY_WAITS_S", (0.05, 0.1, 0.2))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest.py turns offline mode on for other tests
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield
    assert hub.server_errors == [], "the test hub crashed:\n" + "\n".join(hub.server_errors)


@pytest.fixture(params=["xet-off", "xet-on"])
def xet(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Both client paths: HF_HUB_DISABLE_XET=1 and hf_xet enabled (in-process and for subprocesses)."""
    from huggingface_hub import constants

    disabled = request.param == "xet-off"
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", disabled)
    return {"HF_HUB_DISABLE_XET": "1"} if disabled else {}


def card_text(accuracy: float = 0.91, human: str = "", **extra_meta: Any) -> str:
    """A card as cardgen writes it: huggingface_hub's YAML, then generated sections between markers."""
    from huggingface_hub import EvalResult, ModelCardData

    extra_meta.setdefault("eval_results", [
        EvalResult(task_type="text-classification", dataset_type="imdb", dataset_name="IMDB", dataset_split="test",
                   metric_type="accuracy", metric_value=accuracy)])
    data = ModelCardData(model_name="tiny-bert-sentiment", license="mit", library_name="transformers",
                         tags=["cardgen", "text-classification"], **extra_meta)
    return (f"---\n{data.to_yaml()}\n---\n# tiny-bert-sentiment\n\n{human}"
            + section("summary", "A tiny BERT fine-tuned on movie reviews.")
            + "\n"
            + section("results", f"| metric | value |\n|---|---|\n| accuracy | {accuracy} |"))


def make_run_dir(path: Path, accuracy: float = 0.91, card: str | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "README.md").write_text(card if card is not None else card_text(accuracy), encoding="utf-8")
    (path / "run.json").write_text(json.dumps({"schema_version": 1, "results": {"accuracy": accuracy}}))
    (path / "plots").mkdir(exist_ok=True)
    (path / "plots" / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(64)))
    (path / "confusion.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (path / "config.yaml").write_text("seed: 0\n")  # not a card file: never pushed
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run_dir(tmp_path / "run")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT classifier and its tokenizer, built in-process and saved as safetensors."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)})
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=2)
    BertForSequenceClassification(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def cli(hub: HubServer, tmp_path: Path, *args: str, env: dict[str, str] | None = None,
        token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    """``python -m cardgen ARGS`` with a clean HF environment pointing at the test Hub."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "CARDGEN_"))}
    base.update({"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1",
                 "COLUMNS": "200", "PYTHONPATH": str(ROOT)})
    if token is not None:
        base["HF_TOKEN"] = token
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "cardgen", *args], env=base, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def lib_push(hub: HubServer, run: Path, **kwargs: Any) -> PushResult:
    kwargs.setdefault("token", TOKEN)
    return push(run, REPO, endpoint=hub.url, **kwargs)


def hub_card(hub: HubServer, rev: str = "main", repo: str = REPO) -> str:
    return hub.files(repo, rev)["README.md"].decode()


def commit_posts(hub: HubServer) -> int:
    return sum(1 for method, path, _ in hub.requests if method == "POST" and "/commit/" in path)


# ------------------------------------------------------------------------------------------------ pushes
def test_push_to_new_repo(hub: HubServer, tmp_path: Path, run_dir: Path, xet: dict[str, str]) -> None:
    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, env=xet)
    assert proc.returncode == 0, proc.stderr
    assert f"{hub.url}/{REPO}" in proc.stdout and "Pushed 4 file(s)" in proc.stdout
    files = hub.files(REPO)
    assert sorted(files) == [".gitattributes", "README.md", "confusion.svg", "plots/curves.png", "run.json"]
    assert files["README.md"] == (run_dir / "README.md").read_bytes()
    assert files["plots/curves.png"] == (run_dir / "plots" / "curves.png").read_bytes()
    assert hub.commit_count(REPO) == 2  # the Hub's initial commit + ONE commit with everything
    assert commit_posts(hub) == 1
    assert hub.repos[REPO].private is False


def test_card_loads_from_hub_with_the_run_results(hub: HubServer, tmp_path: Path, run_dir: Path) -> None:
    lib_push(hub, run_dir)
    # ModelCard.load has no endpoint argument and builds URLs from HF_ENDPOINT as read at import: a subprocess.
    code = ("import json, sys; from huggingface_hub import ModelCard; "
            f"r = ModelCard.load({REPO!r}).data.eval_results; "
            "json.dump([[e.metric_type, e.metric_value] for e in r], sys.stdout)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf_home"),
                "HF_HUB_DISABLE_TELEMETRY": "1"})
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    run = json.loads((run_dir / "run.json").read_text())
    assert json.loads(proc.stdout) == [["accuracy", run["results"]["accuracy"]]]


def test_push_as_pull_request_leaves_main_untouched(hub: HubServer, tmp_path: Path, run_dir: Path,
                                                    xet: dict[str, str]) -> None:
    assert cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, env=xet).returncode == 0
    main_before = hub.repos[REPO].branches["main"]
    main_files = hub.files(REPO)
    make_run_dir(run_dir, accuracy=0.95)

    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, "--create-pr", env=xet)
    assert proc.returncode == 0, proc.stderr
    assert f"{hub.url}/{REPO}/discussions/1" in proc.stdout
    assert hub.repos[REPO].branches["main"] == main_before and hub.files(REPO) == main_files
    assert "| accuracy | 0.95 |" in hub_card(hub, "refs/pr/1")
    assert json.loads(hub.files(REPO, "refs/pr/1")["run.json"])["results"]["accuracy"] == 0.95

    from huggingface_hub import HfApi

    refs = HfApi(endpoint=hub.url, token=TOKEN).list_repo_refs(REPO, include_pull_requests=True)
    assert [r.ref for r in refs.pull_requests] == ["refs/pr/1"]


def test_pull_request_on_a_new_repo(hub: HubServer, run_dir: Path, xet: dict[str, str]) -> None:
    result = lib_push(hub, run_dir, create_pr=True)
    assert result.pr_url == f"{hub.url}/{REPO}/discussions/1" and result.created_repo
    assert sorted(hub.files(REPO)) == [".gitattributes"]
    assert "README.md" in hub.files(REPO, "refs/pr/1")


def test_push_twice_is_a_no_op_then_a_clean_commit(hub: HubServer, tmp_path: Path, run_dir: Path,
                                                   xet: dict[str, str]) -> None:
    assert cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, env=xet).returncode == 0
    head = hub.repos[REPO].branches["main"]

    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, env=xet)
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to push" in proc.stdout
    assert hub.repos[REPO].branches["main"] == head and commit_posts(hub) == 1

    (run_dir / "confusion.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>')
    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, env=xet)
    assert proc.returncode == 0, proc.stderr
    new_head = hub.repos[REPO].branches["main"]
    assert hub.repos[REPO].commits[new_head].parent == head  # one clean commit on top
    assert hub.files(REPO)["confusion.svg"] == (run_dir / "confusion.svg").read_bytes()
    assert "confusion.svg" in proc.stdout and "changed" in proc.stdout


def test_with_model_round_trip_gives_same_predictions(hub: HubServer, tmp_path: Path, tiny_model: Path,
                                                      xet: dict[str, str]) -> None:
    import shutil

    import torch
    from huggingface_hub import HfApi
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = make_run_dir(tmp_path / "run")
    for item in tiny_model.iterdir():
        shutil.copy(item, run / item.name)
    (run / "training_args.bin").write_bytes(b"pickle")  # never pushed

    result = lib_push(hub, run, with_model=True)
    pushed = {f.path for f in result.files}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= pushed
    assert "training_args.bin" not in hub.files(REPO) and "config.yaml" not in hub.files(REPO)

    api = HfApi(endpoint=hub.url, token=TOKEN)
    download = tmp_path / "download"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        api.hf_hub_download(REPO, name, local_dir=download)
    texts = ["the movie was great", "awful boring plot", "the acting is not good"]

    def predict(folder: Path) -> torch.Tensor:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        with torch.no_grad():
            return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits

    local, remote = predict(tiny_model), predict(download)
    assert torch.equal(local, remote)
    assert not torch.equal(local[0], local[1])  # the inputs are really tokenized differently


def test_with_model_without_weights_is_an_error(hub: HubServer, run_dir: Path) -> None:
    with pytest.raises(HubError, match="no \\*.safetensors weights") as info:
        lib_push(hub, run_dir, with_model=True)
    assert "without --with-model" in (info.value.hint or "")
    assert hub.repos == {}


def test_private_repo(hub: HubServer, tmp_path: Path, run_dir: Path, xet: dict[str, str]) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, "--private", env=xet)
    assert proc.returncode == 0, proc.stderr
    assert hub.repos[REPO].private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).model_info(REPO)
    assert HfApi(endpoint=hub.url, token=TOKEN).model_info(REPO).private is True


def test_private_flag_on_an_existing_public_repo_is_an_error(hub: HubServer, run_dir: Path) -> None:
    hub.create_repo(REPO, private=False)
    with pytest.raises(HubError, match="already exists and is public"):
        lib_push(hub, run_dir, private=True)
    assert hub.commit_count(REPO) == 1


def test_push_to_a_new_branch(hub: HubServer, run_dir: Path, xet: dict[str, str]) -> None:
    result = lib_push(hub, run_dir, revision="dev")
    assert result.revision == "dev"
    assert sorted(hub.files(REPO)) == [".gitattributes"]
    assert "README.md" in hub.files(REPO, "dev")


# ------------------------------------------------------------------------------------------------ merging
def test_existing_card_keeps_human_text_and_metadata(hub: HubServer, tmp_path: Path, run_dir: Path,
                                                     xet: dict[str, str]) -> None:
    from huggingface_hub import EvalResult

    lib_push(hub, run_dir)
    # Someone edits the card on the Hub: a paragraph, a metadata key, and a result on another dataset.
    edited = card_text(0.91, human="Written by a person: do not use on tweets.\n\n", language="en",
                       eval_results=[
                           EvalResult(task_type="text-classification", dataset_type="imdb", dataset_name="IMDB",
                                      dataset_split="test", metric_type="accuracy", metric_value=0.91),
                           EvalResult(task_type="text-classification", dataset_type="sst2", dataset_name="SST-2",
                                      metric_type="accuracy", metric_value=0.77)])
    hub.commit_files(REPO, {"README.md": edited.encode()}, message="human edit")

    make_run_dir(run_dir, accuracy=0.95)
    result = lib_push(hub, run_dir)
    assert "-| accuracy | 0.91 |" in result.diff or "| accuracy | 0.95 |" in result.diff
    card = hub_card(hub)
    meta, body = split_front_matter(card)
    assert "Written by a person: do not use on tweets." in body
    assert "| accuracy | 0.95 |" in body and "0.91" not in card
    assert meta["language"] == "en" and meta["license"] == "mit"
    results = meta["model-index"][0]["results"]
    values = sorted((r["dataset"]["type"], r["metrics"][0]["value"]) for r in results)
    assert values == [("imdb", 0.95), ("sst2", 0.77)]  # ours won, theirs kept

    # --overwrite replaces the card with ours as it is.
    lib_push(hub, run_dir, overwrite=True)
    assert hub_card(hub) == (run_dir / "README.md").read_text()


def test_hand_written_card_is_not_replaced_without_overwrite(hub: HubServer, run_dir: Path) -> None:
    hub.create_repo(REPO)
    hub.commit_files(REPO, {"README.md": b"---\nlicense: mit\n---\n# Written by hand\n"})
    head = hub.repos[REPO].branches["main"]
    with pytest.raises(HubError, match="no cardgen sections") as info:
        lib_push(hub, run_dir)
    assert "--overwrite" in (info.value.hint or "")
    assert hub.repos[REPO].branches["main"] == head
    lib_push(hub, run_dir, overwrite=True)
    assert hub_card(hub) == (run_dir / "README.md").read_text()


# ------------------------------------------------------------------------------------------------ validation
def test_null_in_metadata_is_rejected_before_anything_is_written(hub: HubServer, tmp_path: Path) -> None:
    card = card_text().replace("license: mit", "license: mit\nbase_model: null")
    run = make_run_dir(tmp_path / "run", card=card)
    with pytest.raises(HubError, match="`base_model` is null"):
        lib_push(hub, run)
    assert hub.repos == {}


def test_missing_model_index_field_is_rejected(hub: HubServer, tmp_path: Path) -> None:
    card = card_text().replace("      type: imdb\n", "")
    assert card != card_text()
    run = make_run_dir(tmp_path / "run", card=card)
    with pytest.raises(HubError, match=r"dataset\.type` is missing"):
        lib_push(hub, run)
    assert hub.repos == {}


def test_metadata_the_hub_rejects(hub: HubServer, tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", card=card_text().replace("license: mit", "license: not-a-license"))
    with pytest.raises(HubError, match="the Hub rejected the card's metadata: \"license\" must be one of"):
        lib_push(hub, run)
    assert hub.repos == {}  # validated before the repo was created


def test_malformed_repo_id(hub: HubServer, tmp_path: Path, run_dir: Path) -> None:
    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", "no-namespace")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("Error: --repo-id must look like NAMESPACE/NAME")
    assert len(proc.stderr.strip().splitlines()) == 1
    for bad in ("a/b/c", "a/-b", "a/b--c", "/b", "a/"):
        with pytest.raises(HubError, match="--repo-id"):
            push(run_dir, bad, token=TOKEN, endpoint=hub.url)
    assert hub.requests == []


# ------------------------------------------------------------------------------------------------ failures
def test_500_once_on_commit_is_retried(hub: HubServer, run_dir: Path, xet: dict[str, str]) -> None:
    hub.fail("POST", r"/commit/", status=500, times=1)
    result = lib_push(hub, run_dir)
    assert commit_posts(hub) == 2
    assert hub.commit_count(REPO) == 2 and result.commit_oid == hub.repos[REPO].branches["main"]


@pytest.mark.parametrize("route, method", [(r"^/api/models/[^/]+/[^/]+$", "GET"), (r"/preupload/", "POST"),
                                           (r"/api/validate-yaml", "POST"), (r"/api/repos/create", "POST")])
def test_500_once_elsewhere_is_retried(hub: HubServer, run_dir: Path, route: str, method: str) -> None:
    failure = hub.fail(method, route, status=503, times=1)
    lib_push(hub, run_dir)  # preupload: huggingface_hub's own retry (1 s); the others: cardgen's
    assert failure.hits == 1
    assert hub.commit_count(REPO) == 2


def test_500_always_is_a_clear_error_and_nothing_is_committed(hub: HubServer, tmp_path: Path, run_dir: Path,
                                                              xet: dict[str, str]) -> None:
    hub.create_repo(REPO)
    hub.fail("POST", r"/commit/", status=500)
    with pytest.raises(HubError, match="kept failing with HTTP 500.*nothing was committed") as info:
        lib_push(hub, run_dir)
    assert "try again later" in (info.value.hint or "")
    assert commit_posts(hub) == len(transport.RETRY_WAITS_S) + 1  # bounded
    assert hub.commit_count(REPO) == 1 and sorted(hub.files(REPO)) == [".gitattributes"]


def test_500_always_from_the_cli_is_one_line(hub: HubServer, tmp_path: Path, run_dir: Path) -> None:
    hub.fail("POST", r"/api/validate-yaml", status=502)
    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO)  # real backoff: 1 + 2 + 4 s
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: the Hub kept failing with HTTP 502") and "Traceback" not in proc.stderr
    assert hub.repos == {}


def test_dropped_connection_is_retried(hub: HubServer, run_dir: Path, xet: dict[str, str]) -> None:
    hub.fail("POST", r"/commit/", mode="drop", times=1)
    lib_push(hub, run_dir)
    assert hub.commit_count(REPO) == 2


@pytest.mark.parametrize("create_pr", [False, True])
def test_lost_answer_after_the_commit_landed_makes_no_duplicate(hub: HubServer, run_dir: Path,
                                                                create_pr: bool) -> None:
    hub.create_repo(REPO)
    hub.fail("POST", r"/commit/", mode="drop", when="after", times=1)
    result = lib_push(hub, run_dir, create_pr=create_pr)
    assert commit_posts(hub) == 1  # not sent again: the landed commit was found
    if create_pr:
        assert list(hub.repos[REPO].prs) == [1] and result.pr_url == f"{hub.url}/{REPO}/discussions/1"
    else:
        assert hub.commit_count(REPO) == 2 and result.commit_oid == hub.repos[REPO].branches["main"]


def test_slow_answers_still_succeed(hub: HubServer, run_dir: Path) -> None:
    hub.fail("*", r"^/api/", mode="slow", delay=0.2, times=3)
    lib_push(hub, run_dir)
    assert hub.commit_count(REPO) == 2


def test_a_hung_hub_times_out_and_is_retried(hub: HubServer, run_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub's client would wait forever; cardgen gives each request CARDGEN_HUB_TIMEOUT seconds."""
    from huggingface_hub import get_session

    from cardgen.console import NullProgress

    class Notes(NullProgress):
        def __init__(self) -> None:
            self.notes: list[str] = []

        def note(self, message: str) -> None:
            self.notes.append(message)

    hub.create_repo(REPO)
    monkeypatch.setenv("CARDGEN_HUB_TIMEOUT", "0.5")
    before = get_session().timeout
    stuck = hub.fail("POST", r"/commit/", mode="slow", delay=1.5, times=1)  # the first commit answers late
    notes = Notes()
    start = time.monotonic()
    lib_push(hub, run_dir, progress=notes)
    time.sleep(max(0.0, start + 1.5 + 0.5 - time.monotonic()))  # the server finishes the late request in this test
    # cardgen stopped waiting after 0.5 s and retried; the commit landed exactly once
    assert stuck.hits == 1 and any("ReadTimeout" in n and "retrying" in n for n in notes.notes), notes.notes
    assert hub.commit_count(REPO) == 2  # the repo's first commit and ours, once
    assert get_session().timeout == before  # the shared client's own setting is put back
    # a Hub that never answers ends in one line that names the timeout (the error the last attempt raised)
    import httpx2

    error = transport.to_hub_error(httpx2.ReadTimeout("timed out"), REPO, hub.url, transport.timeout_seconds())
    assert "did not answer within 0.5 s" in error.message and "nothing was committed" in error.message
    assert "CARDGEN_HUB_TIMEOUT" in (error.hint or "")
    monkeypatch.setenv("CARDGEN_HUB_TIMEOUT", "soon")
    with pytest.raises(HubError, match="CARDGEN_HUB_TIMEOUT must be a number"):
        lib_push(hub, run_dir)


def test_pushed_run_json_hides_local_paths(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The published run.json names files the way the card does, not by the machine's absolute paths."""
    project = tmp_path / "home" / "alice" / "project"
    data = project / "data" / "train.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text("{}\n")
    run = make_run_dir(project / "runs" / "r1")
    (run / "checkpoints").mkdir()
    elsewhere = tmp_path / "scratch" / "cache" / "model"
    elsewhere.mkdir(parents=True)
    record = {"config": {"data": {"train": str(data)}, "output": {"dir": str(run)},
                         "model": {"name_or_path": str(elsewhere)}},
              "data": {"files": {str(data): "sha256"}}, "checkpoints": str(run / "checkpoints"),
              "texts": ["/r/movies was right about this one", "/"]}
    (run / "run.json").write_text(json.dumps(record, indent=2))
    monkeypatch.chdir(project)
    monkeypatch.setenv("HOME", str(tmp_path / "home" / "alice"))
    lib_push(hub, run)
    pushed = hub.files(REPO)["run.json"].decode()
    assert str(tmp_path) not in pushed
    published = json.loads(pushed)
    assert published["config"]["data"]["train"] == "data/train.jsonl"
    assert published["data"]["files"] == {"data/train.jsonl": "sha256"}
    assert published["config"]["output"]["dir"] == "." and published["checkpoints"] == "checkpoints"
    assert published["config"]["model"]["name_or_path"] == ".../cache/model"
    assert published["texts"] == record["texts"]  # text that only looks like a path is left alone
    assert json.loads((run / "run.json").read_text()) == record  # the local record keeps full paths


def test_hub_unreachable(run_dir: Path) -> None:
    with pytest.raises(HubError, match="cannot reach the Hub at http://127.0.0.1:9") as info:
        push(run_dir, REPO, token=TOKEN, endpoint="http://127.0.0.1:9")
    assert "HF_ENDPOINT" in (info.value.hint or "")


def test_branch_moved_during_push_is_a_conflict(hub: HubServer, run_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    hub.create_repo(REPO)

    # Someone commits between cardgen reading the repo and committing: the parent_commit guard answers 412.
    original = push_module._validate_on_hub

    def validate_then_someone_commits(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        hub.commit_files(REPO, {"notes.txt": b"someone else"})

    monkeypatch.setattr(push_module, "_validate_on_hub", validate_then_someone_commits)
    with pytest.raises(HubError, match="changed on the Hub during the push") as info:
        lib_push(hub, run_dir)
    assert "run the push again" in (info.value.hint or "")
    assert sorted(hub.files(REPO)) == [".gitattributes", "notes.txt"]


# ------------------------------------------------------------------------------------------------ tokens
def test_bad_token(hub: HubServer, tmp_path: Path, run_dir: Path, xet: dict[str, str]) -> None:
    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, env=xet, token=BAD_TOKEN)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: the Hub rejected the token (HTTP 401")
    assert "Traceback" not in proc.stderr
    assert BAD_TOKEN not in proc.stdout + proc.stderr
    assert hub.repos == {}


def test_read_only_token_has_no_write_access(hub: HubServer, run_dir: Path) -> None:
    with pytest.raises(HubError, match="no write access to alice/tiny-bert-sentiment \\(HTTP 403"):
        lib_push(hub, run_dir, token=READ_TOKEN)
    assert hub.repos == {}


def test_no_token(hub: HubServer, tmp_path: Path, run_dir: Path) -> None:
    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, token=None)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("Error: no Hugging Face token found (hint: pass --token, set HF_TOKEN, or run "
                                   "`hf auth login` with a token that has write access)")
    assert hub.requests == []


def test_token_from_the_login_cache(hub: HubServer, tmp_path: Path, run_dir: Path) -> None:
    (tmp_path / "hf_home").mkdir()
    (tmp_path / "hf_home" / "token").write_text(TOKEN)
    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, token=None)
    assert proc.returncode == 0, proc.stderr
    assert hub.commit_count(REPO) == 2


def test_token_appears_in_no_output_file_or_log(hub: HubServer, tmp_path: Path, run_dir: Path,
                                                xet: dict[str, str]) -> None:
    debug = {**xet, "HF_HUB_VERBOSITY": "debug", "CARDGEN_DEBUG": "1"}
    outputs = []
    # a push with the token on the command line, with every log turned up
    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, "--token", TOKEN, env=debug, token=None)
    assert proc.returncode == 0, proc.stderr
    outputs.append(proc.stdout + proc.stderr)
    # a failing push (the Hub errors) with tracebacks on
    hub.fail("POST", r"/commit/", status=403)
    make_run_dir(run_dir, accuracy=0.5)
    proc = cli(hub, tmp_path, "--debug", "push", str(run_dir), "--repo-id", REPO, env=debug)
    assert proc.returncode != 0
    outputs.append(proc.stdout + proc.stderr)
    # a dry run
    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, "--dry-run", env=debug)
    outputs.append(proc.stdout + proc.stderr)

    assert all(TOKEN not in out for out in outputs)
    for path in [*run_dir.rglob("*"), *(tmp_path / "hf_home").rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for repo in hub.repos.values():
        for commit in repo.commits.values():
            assert all(TOKEN.encode() not in content for content in commit.files.values())
            assert TOKEN not in commit.title + commit.message


# ------------------------------------------------------------------------------------------------ dry run
def test_dry_run_writes_nothing_and_shows_the_diff(hub: HubServer, tmp_path: Path, run_dir: Path,
                                                   xet: dict[str, str]) -> None:
    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, "--dry-run", env=xet)
    assert proc.returncode == 0, proc.stderr
    assert "Dry run: nothing was written" in proc.stdout
    assert "README.md" in proc.stdout and "plots/curves.png" in proc.stdout and "new" in proc.stdout
    assert "+| accuracy | 0.91 |" in proc.stdout
    assert hub.repos == {}  # not even created

    lib_push(hub, run_dir)
    head = hub.repos[REPO].branches["main"]
    make_run_dir(run_dir, accuracy=0.93)
    seen = len(hub.requests)
    proc = cli(hub, tmp_path, "push", str(run_dir), "--repo-id", REPO, "--dry-run", env=xet)
    assert proc.returncode == 0, proc.stderr
    assert "-| accuracy | 0.91 |" in proc.stdout and "+| accuracy | 0.93 |" in proc.stdout
    assert "unchanged" in proc.stdout  # the plots
    assert hub.repos[REPO].branches["main"] == head
    assert not any("/commit/" in p or "/repos/create" in p or "/branch/" in p for _, p, _ in hub.requests[seen:])


def test_dry_run_library_result(hub: HubServer, run_dir: Path) -> None:
    result = lib_push(hub, run_dir, dry_run=True, token=None)  # no token needed to look
    assert result.dry_run and result.commit_oid is None and result.created_repo
    assert {f.path: f.status for f in result.files} == {
        "README.md": "new", "run.json": "new", "plots/curves.png": "new", "confusion.svg": "new"}
    assert hub.repos == {}


# ------------------------------------------------------------------------------------------------ a real run
@pytest.mark.slow
def test_real_run_card_round_trips_and_keeps_human_edits(hub: HubServer, tmp_path: Path, tiny_run: Path) -> None:
    """A card rendered by cardgen.card from a real (tiny) run: pushed with the model, loaded back with
    ModelCard.load, edited by a person on the Hub, pushed again: the edit survives, the numbers are the run's."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    result = push(run, REPO, token=TOKEN, endpoint=hub.url, with_model=True)
    assert {"README.md", "run.json", "model.safetensors", "config.json"} <= {f.path for f in result.files}
    assert "config.yaml" not in hub.files(REPO)

    code = ("import json, sys; from huggingface_hub import ModelCard; "
            f"r = ModelCard.load({REPO!r}).data.eval_results; "
            "json.dump([[e.metric_type, e.metric_name, e.metric_value] for e in r], sys.stdout)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf_home")})
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    metrics = json.loads((run / "run.json").read_text())["evaluation"]["metrics"]
    assert ["accuracy", "Accuracy", pytest.approx(metrics["accuracy"], abs=5e-5)] in loaded

    # A person replaces a TODO outside the markers on the Hub; the card is re-rendered and pushed again.
    card = hub_card(hub)
    todo = next(line for line in card.splitlines() if line.startswith("> TODO (author): who should use"))
    hub.commit_files(REPO, {"README.md": card.replace(todo, "Use it for tiny sentiment demos only.").encode()})
    assert "# tiny-sentiment\n" in card  # inside the generated summary section
    (run / "README.md").write_text(card.replace("# tiny-sentiment\n", "# tiny-sentiment v2\n", 1))
    push(run, REPO, token=TOKEN, endpoint=hub.url)
    final = hub_card(hub)
    assert "Use it for tiny sentiment demos only." in final and todo not in final
    assert "# tiny-sentiment v2\n" in final


def test_run_checks_the_push_target_before_training(hub: HubServer, tmp_path: Path, make_config: Any) -> None:
    """`cardgen run --push-to` refuses a bad repo id or a missing token before anything is trained or written."""
    config = make_config()
    out = tmp_path / "out"
    bad = cli(hub, tmp_path, "run", str(config), "--push-to", "not a repo")
    assert bad.returncode == 2 and bad.stderr.startswith("Error: --push-to must look like NAMESPACE/NAME")
    no_token = cli(hub, tmp_path, "run", str(config), "--push-to", REPO, token=None)
    assert no_token.returncode == 2 and "no Hugging Face token found" in no_token.stderr
    lonely = cli(hub, tmp_path, "run", str(config), "--push-model")
    assert lonely.returncode == 2 and "--push-model needs --push-to" in lonely.stderr
    assert not out.exists() and hub.requests == []  # nothing trained, written or sent


@pytest.mark.slow  # a real (tiny) run and its push with the model, in a subprocess
def test_run_push_to_with_the_model(hub: HubServer, tmp_path: Path, make_config: Any) -> None:
    config = make_config(training={"num_epochs": 1}, benchmark={"enabled": False})
    proc = cli(hub, tmp_path, "run", str(config), "--push-to", REPO, "--push-model")
    assert proc.returncode == 0, proc.stderr
    pushed = hub.files(REPO)
    assert {"README.md", "run.json", "model.safetensors", "config.json"} <= set(pushed)
    assert str(tmp_path) not in pushed["run.json"].decode()


def test_with_model_pushes_an_adapter_naming_its_hub_base(hub: HubServer, tmp_path: Path) -> None:
    """A LoRA run's directory holds adapter_config.json instead of config.json; the pushed copy names the base by
    its Hub id (card.base_model), not the local directory it was trained from, which stays as it is."""
    run = make_run_dir(tmp_path / "run")
    (run / "run.json").write_text(json.dumps({"config": {"card": {"base_model": "test-org/tiny-bert"}}}))
    local = {"base_model_name_or_path": str(tmp_path / "local-base"), "peft_type": "LORA", "r": 8}
    (run / "adapter_config.json").write_text(json.dumps(local))
    (run / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    (run / "tokenizer.json").write_text("{}")
    pushed = {f.path for f in lib_push(hub, run, with_model=True).files}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= pushed
    remote = json.loads(hub.files(REPO)["adapter_config.json"])
    assert remote == {**local, "base_model_name_or_path": "test-org/tiny-bert"}
    assert json.loads((run / "adapter_config.json").read_text()) == local
