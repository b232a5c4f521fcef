"""Secrets: a Hub token in the environment of a run (and of the push at its end) appears in no file of the output
directory, no checkpoint, no log line, no error message and nothing that reaches the Hub.

The run is a real ``cardgen --debug run ... --push-to`` subprocess with every log turned up, pushing to the local
test Hub (tests/hub_server.py) through the real huggingface_hub client.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import base_config, write_config
from hub_server import HubServer

from cardgen.cli import cli

TOKEN = "hf_secretRUNtoken_7d3f9a1c5e2b8d40"  # unique, so any leak is easy to find
LEGACY_TOKEN = "hf_secretLEGACYtoken_0a1b2c3d4e5f"
BAD_TOKEN = "hf_secretBADtoken_ffffeeeeddddcccc"
SECRETS = (TOKEN, LEGACY_TOKEN, BAD_TOKEN)
REPO = "alice/secret-run"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    """One-line errors, even after an in-process `--debug` elsewhere set CARDGEN_DEBUG in os.environ."""
    monkeypatch.setenv("CARDGEN_DEBUG", "")


def clean_env(hub: HubServer, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "CARDGEN_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_VERBOSITY="debug",
               TRANSFORMERS_VERBOSITY="debug", COLUMNS="200", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    return env


def cardgen(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cardgen", *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def files_below(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in root.rglob("*") if p.is_file())


def assert_no_secret(where: str, data: bytes | str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for secret in SECRETS:
        assert secret.encode() not in raw, f"{secret[:12]}... leaked in {where}"


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    server = HubServer(tokens={TOKEN: "alice"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def secret_run(hub: HubServer, tiny_bert: Path, tiny_data: Path,
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A debug run with tokens in its environment that keeps its checkpoints and pushes its card at the end."""
    root = tmp_path_factory.mktemp("secrets")
    out = root / "out"
    cfg = write_config(root / "config.yaml", base_config(
        tiny_bert, tiny_data, out, training={"num_epochs": 1, "learning_rate": 5e-3, "keep_checkpoints": True}))
    env = clean_env(hub, root / "hf_home", HF_TOKEN=TOKEN, HUGGING_FACE_HUB_TOKEN=LEGACY_TOKEN)
    proc = cardgen("--debug", "run", str(cfg), "--push-to", REPO, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr
    return {"root": root, "out": out, "cfg": cfg, "env": env, "logs": proc.stdout + proc.stderr}


@pytest.mark.slow  # one real run + push in a subprocess (~15-30 s on 2 busy cores)
def test_run_and_push_leave_the_token_nowhere(secret_run: dict[str, Any], hub: HubServer) -> None:
    out: Path = secret_run["out"]
    assert (out / "checkpoints").is_dir()  # kept, so the Trainer's own files (training_args.bin ...) are scanned
    scanned = list(files_below(secret_run["root"]))
    assert {"run.json", "README.md", "config.yaml", "training_args.bin", "trainer_state.json"} <= {
        p.name for p in scanned}
    for path in scanned:
        assert_no_secret(str(path), path.read_bytes())
    assert_no_secret("the run's stdout and stderr", secret_run["logs"])
    pushed = hub.files(REPO)
    assert "README.md" in pushed and "run.json" in pushed
    for name, content in pushed.items():
        assert_no_secret(f"{name} on the Hub", content)
    for repo in hub.repos.values():
        for commit in repo.commits.values():
            assert_no_secret("a commit message", commit.title + commit.message)


@pytest.mark.slow  # one real run + push in a subprocess (~15-30 s on 2 busy cores)
def test_run_record_keeps_no_hub_arguments(secret_run: dict[str, Any]) -> None:
    import json

    record = json.loads((secret_run["out"] / "run.json").read_text())
    arguments = record["training"]["arguments"]
    assert not [k for k in arguments if "token" in k and k.startswith(("hub", "push"))]
    assert not any(k.endswith("token") for k in record["config"]["training"]["extra_args"])


@pytest.mark.slow  # one real run + push in a subprocess (~15-30 s on 2 busy cores)
def test_error_messages_never_carry_the_token(secret_run: dict[str, Any], hub: HubServer) -> None:
    root: Path = secret_run["root"]
    env = secret_run["env"]
    # a run that fails at once, with tracebacks on
    failed = cardgen("--debug", "run", str(secret_run["cfg"]), "--set", "training.learning_rate=-1", env=env, cwd=root)
    assert failed.returncode != 0 and "Traceback" in failed.stderr
    assert_no_secret("a failed run's traceback", failed.stdout + failed.stderr)
    # a push the Hub refuses (wrong token), with and without tracebacks
    for debug in ([], ["--debug"]):
        refused = cardgen(*debug, "push", str(secret_run["out"]), "--repo-id", REPO, "--token", BAD_TOKEN,
                          env=env, cwd=root)
        assert refused.returncode != 0
        assert_no_secret("a refused push", refused.stdout + refused.stderr)


def test_a_token_in_the_config_is_refused_without_echoing_it(tmp_path: Path, tiny_bert: Path,
                                                             tiny_data: Path) -> None:
    """hub_token in training.extra_args would be written to config.yaml, run.json and the card: refused."""
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "c.yaml", base_config(tiny_bert, tiny_data, out,
                                                        training={"extra_args": {"hub_token": TOKEN}}))
    result = CliRunner().invoke(cli, ["run", str(cfg)])
    assert result.exit_code == 2
    assert "extra_args.hub_token" in result.stderr and "HF_TOKEN" in result.stderr
    assert_no_secret("the error", result.output)
    assert not out.exists()
    with_set = CliRunner().invoke(cli, ["run", str(write_config(tmp_path / "d.yaml", base_config(
        tiny_bert, tiny_data, out))), "--set", f"training.extra_args.push_to_hub_token={TOKEN}"])
    assert with_set.exit_code == 2 and "push_to_hub_token" in with_set.stderr
    assert_no_secret("the error", with_set.output)
