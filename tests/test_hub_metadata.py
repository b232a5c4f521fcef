"""Issue 18 parts 4 and 5: Hub metadata beyond model-index (the base model's Hub commit, the dataset revision,
run.json as the results' source, `widget:` examples, opt-in `.eval_results/*.yaml`), and honesty about the
network (`push --dry-run` without a Hub, `lint --online` against the local test Hub)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import sentiment_rows, write_jsonl
from hub_server import HubServer

from cardgen.card.lint import hub_problems
from cardgen.card.markers import split_front_matter
from cardgen.card.metadata import card_data, eval_result_entries, widget_entries
from cardgen.record import CardExample, load_record, save_record

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_cardgenISSUE18token_5d2e"
USER = "alice"


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    server = HubServer(tokens={TOKEN: USER}).start()
    yield server
    server.stop()


def cli(tmp_path: Path, *args: str, endpoint: str, token: str | None = TOKEN,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "CARDGEN_"))}
    env.update({"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HUB_DISABLE_XET": "1", "COLUMNS": "200", "PYTHONPATH": str(ROOT)})
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "cardgen", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: connections are refused


# ------------------------------------------------------------------------------------------------ widget

def test_widget_entries() -> None:
    long = "word " * 200
    entries = widget_entries(["  a  good\nfilm ", "a good film", "", {"text": "q?", "context": "c.", "x": None},
                              long, "never reached"], limit=3)
    assert entries[0] == {"text": "a good film"}  # whitespace collapsed, the duplicate dropped
    assert entries[1] == {"text": "q?", "context": "c."}  # no null values
    assert len(entries[2]["text"]) == 500 and entries[2]["text"].endswith("…")
    assert len(entries) == 3


def test_card_metadata_from_the_record(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    record = load_record(run)
    assert record.examples and {ex.label for ex in record.examples} == {"negative", "positive"}
    meta = card_data(record).to_dict()
    assert 1 <= len(meta["widget"]) <= 3 and all(set(w) == {"text"} for w in meta["widget"])
    labels = {ex.text: ex.label for ex in record.examples}
    assert {labels[w["text"]] for w in meta["widget"][:2]} == {"negative", "positive"}  # one per label first
    record.data.hub_dataset, record.data.hub_sha = "stanfordnlp/sst2", "a" * 40
    record.data.hub_revision = "main"
    record.model.commit_sha = "b" * 40
    meta = card_data(record).to_dict()
    assert meta["model-index"][0]["results"][0]["dataset"]["revision"] == "a" * 40  # the commit, not "main"
    assert hub_problems(meta) == []
    save_record(record, run / "run.json")
    from cardgen.card.render import write_card

    write_card(record, run / "README.md")
    card = (run / "README.md").read_text()
    assert f"at commit `{'a' * 40}`](https://huggingface.co/datasets/stanfordnlp/sst2/tree/{'a' * 40})" in card


def test_eval_results_entries_are_opt_in(tiny_run: Path) -> None:
    from huggingface_hub import parse_eval_result_entries

    record = load_record(tiny_run)
    assert eval_result_entries(record, "https://x/run.json") == []
    record.config["eval_results"] = {"dataset_id": "stanfordnlp/sst2", "task_id": "default", "metric": None}
    (entry,) = eval_result_entries(record, "https://x/run.json")
    assert entry.value == round(record.evaluation.metrics["accuracy"], 4)  # type: ignore[union-attr]
    from cardgen.card.metadata import eval_results_yaml

    (parsed,) = parse_eval_result_entries(yaml.safe_load(eval_results_yaml([entry])))
    assert dataclasses.asdict(parsed) == dataclasses.asdict(entry)


# ---------------------------------------------------------------------------------- the base model's commit

def test_run_from_the_hub_records_the_base_models_commit(hub: HubServer, tiny_bert: Path, tmp_path: Path) -> None:
    """A model given by Hub id (the local test Hub): run.json and the card name the commit that was loaded, the
    pushed card's results point at the pushed run.json, and the opt-in .eval_results entry lands beside it."""
    hub.reset()
    repo = f"{USER}/tiny-base"
    hub.create_repo(repo)
    commit = hub.commit_files(repo, {p.name: p.read_bytes() for p in tiny_bert.iterdir() if p.is_file()})
    data = write_jsonl(tmp_path / "data" / "train.jsonl", sentiment_rows(120, 3))
    out = tmp_path / "out"
    proc = cli(tmp_path, "run", "--model", repo, "--data", str(data), "--output", str(out), "--set",
               "compare.enabled=false", "--set", "benchmark.enabled=false", "--set", "training.num_epochs=1",
               "--set", "eval_results.dataset_id=acme/sentiment-bench", "-q", endpoint=hub.url)
    assert proc.returncode == 0, proc.stderr
    record = load_record(out)
    assert record.model.commit_sha == commit and record.model.base_model == repo
    card = (out / "README.md").read_text()
    assert f"Base model: [{repo} at commit `{commit}`](https://huggingface.co/{repo}/tree/{commit})" in card
    meta, _ = split_front_matter(card)
    assert meta["base_model"] == repo

    pushed = cli(tmp_path, "push", str(out), "--repo-id", f"{USER}/tiny-ft", "--json", endpoint=hub.url)
    assert pushed.returncode == 0, pushed.stderr
    files = hub.files(f"{USER}/tiny-ft")
    run_url = f"{hub.url}/{USER}/tiny-ft/blob/main/run.json"
    meta, _ = split_front_matter(files["README.md"].decode())
    sources = {r["source"]["url"] for r in meta["model-index"][0]["results"]}
    assert sources == {run_url}
    entry = yaml.safe_load(files[".eval_results/default.yaml"])[0]
    assert entry["dataset"] == {"id": "acme/sentiment-bench", "task_id": "default"}
    assert entry["source"]["url"] == run_url and entry["value"] == round(record.evaluation.metrics["accuracy"], 4)
    again = cli(tmp_path, "push", str(out), "--repo-id", f"{USER}/tiny-ft", "--json", endpoint=hub.url)
    assert json.loads(again.stdout)["no_change"] is True  # the source urls do not make a second commit


# ------------------------------------------------------------------------------------- push without network

def test_push_dry_run_without_a_hub(tiny_run: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    start = time.perf_counter()
    proc = cli(tmp_path, "push", str(tiny_run), "--repo-id", "alice/x", "--dry-run", endpoint=url, token=None)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert "retrying" not in proc.stderr  # no retries: the 1 + 2 + 4 s of a real push would show here
    assert seconds < 6.0, seconds  # startup included; well under the 7 s of retries it took before
    for name in ("README.md", "run.json", "training_curves.png", "confusion_matrix.png"):
        assert name in proc.stdout
    assert "not compared" in proc.stdout
    assert f"cannot reach the Hub at {url} (ConnectError), so the files and the card above were not compared" \
           in proc.stdout
    result = cli(tmp_path, "push", str(tiny_run), "--repo-id", "alice/x", "--dry-run", "--json", endpoint=url,
                 token=None)
    payload: dict[str, Any] = json.loads(result.stdout)
    assert payload["compared"] is False and payload["dry_run"] is True
    assert {f["status"] for f in payload["files"]} == {"not compared"}


# ----------------------------------------------------------------------------------------------- lint online

def test_lint_online_asks_the_hub(hub: HubServer, tiny_run: Path, tmp_path: Path) -> None:
    ok = cli(tmp_path, "lint", str(tiny_run / "README.md"), "--online", "--json", endpoint=hub.url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    text = (tiny_run / "README.md").read_text().replace("license: apache-2.0", "license: not-a-licence", 1)
    bad = tmp_path / "bad" / "README.md"
    bad.parent.mkdir()
    bad.write_text(text)
    for name in ("training_curves.png", "confusion_matrix.png"):
        shutil.copy(tiny_run / name, bad.parent / name)
    offline = cli(tmp_path, "lint", str(bad), endpoint=hub.url)
    assert offline.returncode == 0, offline.stdout  # the licence list is the Hub's: offline lint cannot know it
    online = cli(tmp_path, "lint", str(bad), "--online", "--json", endpoint=hub.url)
    assert online.returncode == 1
    problems = json.loads(online.stdout)["problems"]
    assert [p["code"] for p in problems] == ["hub-rejected"] and '"license" must be one of' in problems[0]["message"]
    down = cli(tmp_path, "lint", str(bad), "--online", endpoint=f"http://127.0.0.1:{closed_port()}")
    assert down.returncode == 2 and down.stderr.startswith("Error: cannot reach the Hub")
    assert down.stderr.count("\n") == 1


def test_examples_table_in_the_card(tiny_run: Path) -> None:
    card = (tiny_run / "README.md").read_text()
    assert "## Examples from the test split" in card
    rows = [line for line in card.split("## Examples from the test split")[1].splitlines()
            if line.startswith("| negative") or line.startswith("| positive")]
    assert 2 <= len(rows) <= 4
    record = load_record(tiny_run)
    assert all(isinstance(ex, CardExample) for ex in record.examples)
    texts = {ex.text for ex in record.examples}
    test_texts = {json.loads(line)["text"] for line in
                  (Path(record.config["data"]["test"])).read_text().splitlines()}
    assert texts <= test_texts  # drawn from the test split
