"""Issue 13, misleading messages and inconsistencies (cases 18, 19, 20, 22): each command's errors and warnings say
what is true and name the command's own flags.

Reproductions in the style of the bad-input catalogue (tests/test_bad_inputs.py): the CLI in-process through
Click's CliRunner, one-line errors with exit 2, and inputs / outputs byte-identical where nothing should change.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_bad_inputs
from click.testing import CliRunner
from hub_server import HubServer
from test_bad_inputs import Ctx, assert_one_line_error, snapshot

from cardgen.cli import cli

TOKEN = "hf_robustness_write"
ctx = test_bad_inputs.ctx  # the catalogue's fixture: a tiny BERT, tiny data, a finished run, an output to watch


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    server = HubServer(tokens={TOKEN: "alice"}).start()
    yield server
    server.stop()


@pytest.fixture()
def local_hub(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """The in-process huggingface_hub talks to the test Hub (HF_ENDPOINT is read at import, so set the constant)."""
    from huggingface_hub import constants

    from cardgen.hub import transport

    hub.reset()
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(transport, "RETRY_WAITS_S", (0.05, 0.1, 0.2))
    return hub


# ------------------------------------------------------------------------------------------------ 20: run --push-to


def test_push_after_run_fails_with_the_saved_dir_and_the_exact_push_command(ctx: Ctx, local_hub: HubServer) -> None:
    local_hub.fail("POST", r"/commit/", status=403)
    result = CliRunner().invoke(cli, ["run", str(ctx.config()), "--no-train", "-q", "--push-to", "alice/tiny",
                                      "--token", TOKEN])
    assert result.exit_code == 2, result.output
    line = assert_one_line_error(result.stderr, f"saved in {ctx.out}")
    assert TOKEN not in result.output
    command = line.split("`")[-2]
    assert command == f"cardgen push {shlex.quote(str(ctx.out))} --repo-id alice/tiny --token TOKEN"
    assert (ctx.out / "README.md").is_file() and (ctx.out / "run.json").is_file()
    # the command it gives is the one that publishes the saved run
    local_hub.clear_failures()
    args = shlex.split(command)[1:]
    args[args.index("TOKEN")] = TOKEN
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "README.md" in local_hub.files("alice/tiny")


def test_push_with_model_after_run_names_with_model(ctx: Ctx, local_hub: HubServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    local_hub.fail("POST", r"/commit/", status=403)
    result = CliRunner().invoke(cli, ["run", str(ctx.config()), "-q", "--push-to", "alice/tiny", "--push-model"])
    assert result.exit_code == 2, result.output
    line = assert_one_line_error(result.stderr, "no write access")
    assert line.split("`")[-2] == f"cardgen push {shlex.quote(str(ctx.out))} --repo-id alice/tiny --with-model"


def test_run_accepts_the_token_its_hint_asks_for(ctx: Ctx) -> None:
    """The missing-token hint says "pass --token": `run` has that option, and without --push-to it is an error."""
    cfg = ctx.config()
    before = snapshot(ctx.out)
    missing = CliRunner().invoke(cli, ["run", str(cfg), "--push-to", "alice/tiny"])
    assert missing.exit_code == 2
    assert "pass --token" in assert_one_line_error(missing.stderr, "no Hugging Face token")
    lonely = CliRunner().invoke(cli, ["run", str(cfg), "--token", "hf_x"])
    assert lonely.exit_code == 2
    assert_one_line_error(lonely.stderr, "--token needs --push-to")
    assert snapshot(ctx.out) == before


# ------------------------------------------------------------------------------------------------ 22d: Click usage


@pytest.mark.parametrize(("args", "expect", "usage"), [
    (["run", "--foo", "x.yaml"], "No such option '--foo'", "cardgen run [OPTIONS] [CONFIG]"),
    (["run"], "Missing argument 'CONFIG' (or --model and --data", "cardgen run [OPTIONS] [CONFIG]"),
    (["run", "x.yaml", "--set"], "'--set' requires an argument", "cardgen run [OPTIONS] [CONFIG]"),
    (["check"], "Missing argument 'CONFIG' (or --model and --data", "cardgen check [OPTIONS] [CONFIG]"),
    (["compare", "a", "b"], "Missing option '--data'", "cardgen compare [OPTIONS] BASE FT"),
    (["compare", "a", "b", "--data", "x", "--batch-size", "abc"], "'abc' is not a valid integer",
     "cardgen compare [OPTIONS] BASE FT"),
    (["nope"], "No such command 'nope'", "cardgen [OPTIONS] COMMAND"),
    (["--bogus", "run"], "No such option '--bogus'", "cardgen [OPTIONS] COMMAND"),
])
def test_click_usage_errors_are_one_line_with_a_hint(args: list[str], expect: str, usage: str,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args, prog_name="cardgen")
    assert result.exit_code == 2, result.output
    line = assert_one_line_error(result.stderr, expect)
    assert usage in line and "--help`" in line
    assert "Try '" not in result.output and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ 22e: endpoint


@pytest.mark.parametrize("endpoint", ["ftp://hub.example", "htp://hub.example", "hub.example"])
def test_an_endpoint_that_is_no_http_url_fails_at_once(ctx: Ctx, endpoint: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    before = snapshot(ctx.run_dir)
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["push", str(ctx.run_dir), "--repo-id", "alice/tiny", "--token", "hf_x"])
    assert time.perf_counter() - start < 3  # no retries with backoff (1 + 2 + 4 s)
    assert result.exit_code == 2, result.output
    line = assert_one_line_error(result.stderr, "is not an http:// or https:// URL")
    assert "HF_ENDPOINT" in line and "retrying" not in result.output
    assert snapshot(ctx.run_dir) == before
    assert json.loads((ctx.run_dir / "run.json").read_text())  # still the run's record


# ------------------------------------------------------------------------------------------------ 19: compare's hints

CONFIG_TERMS = ("model.name_or_path", "data.", "evaluation.", "--set", "config file", "the config")


def _xlsx(c: Ctx) -> str:
    path = c.tmp / "bad-data" / "test.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04")
    return str(path)


@pytest.mark.parametrize(("build", "expect", "flag"), [
    (lambda c: [str(c.tmp / "no-model"), str(c.run_dir)], "does not exist", "BASE / FT"),
    (lambda c: [str(c.data), str(c.run_dir)], "not a model directory", "BASE / FT"),
    (lambda c: [str(c.bert), str(c.run_dir), "--label-column", "y"], "column 'y'", "--label-column"),
    (lambda c: [str(c.bert), str(c.run_dir), "--label-names", "positive,neutral"], "not among the label names",
     "--label-names"),
    (lambda c: [str(c.bert), str(c.run_dir), "--label-names", "a,a"], "`--label-names` must not repeat", "compare"),
    (lambda c: [str(c.bert), str(c.run_dir), "--max-length", "4"], "--max-length must be >= 8", "compare"),
    (lambda c: [str(c.bert), str(c.run_dir), "--data", _xlsx(c)], "unsupported data file format", "--data"),
], ids=["missing-base", "base-not-a-model", "missing-label-column", "label-outside-names", "repeated-label-names",
        "max-length", "unsupported-format"])
def test_compare_hints_name_compare_flags_not_config_keys(ctx: Ctx, build: Any, expect: str, flag: str) -> None:
    args = build(ctx)
    if "--data" not in args:
        args += ["--data", str(ctx.data / "test.jsonl")]
    out = ctx.tmp / "cmp.json"
    before = snapshot(ctx.run_dir)
    result = CliRunner().invoke(cli, ["compare", *args, "--json", str(out), "-q"])
    assert result.exit_code == 2, result.output
    line = assert_one_line_error(result.stderr, expect)
    hint = line.split("(hint: ", 1)[1]
    assert flag in hint, line
    for term in CONFIG_TERMS:
        assert term not in line, f"{term!r} in {line!r}"
    assert not out.exists() and snapshot(ctx.run_dir) == before


def test_run_hints_keep_naming_config_keys(ctx: Ctx) -> None:
    """The same errors from `run` still name the config keys (run takes a config file)."""
    cfg = ctx.config(model={"name_or_path": str(ctx.tmp / "no-model")})
    result = CliRunner().invoke(cli, ["run", str(cfg)])
    assert result.exit_code == 2
    assert "model.name_or_path" in assert_one_line_error(result.stderr, "does not exist")


# ------------------------------------------------------------------------------------------------ 18: compare's base


def _compare_args(c: Ctx, base: Path, *extra: str) -> list[str]:
    return ["compare", str(base), str(c.run_dir), "--data", str(c.data / "test.jsonl"), "--train",
            str(c.data / "train.jsonl"), "--bootstrap", "100", "--json", str(c.tmp / "cmp.json"), *extra]


def test_compare_with_a_base_the_run_did_not_record_warns_and_names_the_recorded_one(ctx: Ctx) -> None:
    recorded = json.loads((ctx.run_dir / "run.json").read_text())["model"]["base_model"]
    assert Path(recorded) == ctx.bert
    other = ctx.model_dir("other-base")  # the same architecture, but not the checkpoint FT was fine-tuned from
    result = CliRunner().invoke(cli, _compare_args(ctx, other))
    assert result.exit_code == 0, result.output
    warning = f"Warning: FT's run.json records that it was fine-tuned from {recorded}, but BASE is {other}"
    assert warning in " ".join(result.stdout.split())  # in the output, also with -q
    assert f"warning: FT's run.json records that it was fine-tuned from {recorded}" in " ".join(
        result.stderr.split())  # and at once, through the progress
    data = json.loads((ctx.tmp / "cmp.json").read_text())
    assert data["recorded_base_model"] == recorded and data["base_model"] == str(other)
    assert len(data["warnings"]) == 1 and recorded in data["warnings"][0]
    quiet = CliRunner().invoke(cli, [*_compare_args(ctx, other), "-q"])
    assert quiet.exit_code == 0 and warning in " ".join(quiet.stdout.split())


@pytest.mark.parametrize("spelling", ["same", "relative", "trailing-slash"])
def test_compare_with_the_recorded_base_says_nothing(ctx: Ctx, spelling: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ctx.bert.parent)
    base = {"same": str(ctx.bert), "relative": ctx.bert.name, "trailing-slash": f"{ctx.bert}/"}[spelling]
    result = CliRunner().invoke(cli, _compare_args(ctx, Path(base), "-q"))
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output and "warning" not in result.output
    data = json.loads((ctx.tmp / "cmp.json").read_text())
    assert data["recorded_base_model"] == str(ctx.bert) and data["warnings"] == []


# ------------------------------------------------------------------------------------------------ 22c: leakage


def test_leakage_is_warned_on_the_console_and_in_run_json_not_only_in_the_card(ctx: Ctx) -> None:
    from conftest import sentiment_rows, write_jsonl

    train_rows = sentiment_rows(60, 5)
    train = write_jsonl(ctx.tmp / "leaky" / "train.jsonl", train_rows)
    test = write_jsonl(ctx.tmp / "leaky" / "test.jsonl", train_rows[:4] + sentiment_rows(12, 6))
    result = CliRunner().invoke(cli, ["run", str(ctx.data_config(train, test=str(test))), "--no-train"])
    assert result.exit_code == 0, result.output
    console = " ".join(result.stderr.split())
    assert "warning: training data leaks into the test split: 4 of 16 test examples" in console
    record = json.loads((ctx.out / "run.json").read_text())
    leaks = [w for w in record["warnings"] if "leaks into the test split" in w]
    assert len(leaks) == 1 and "4 of 16" in leaks[0]
    card = (ctx.out / "README.md").read_text()
    assert "training data leaks into the evaluation data" in card  # the card's notice, as before
    assert "leaks into the test split" not in card  # ... and not a second time as a plain warning


def test_no_leakage_no_warning(ctx: Ctx) -> None:
    result = CliRunner().invoke(cli, ["run", str(ctx.config()), "--no-train"])
    assert result.exit_code == 0, result.output
    assert "leaks" not in result.stderr
    assert not [w for w in json.loads((ctx.out / "run.json").read_text())["warnings"] if "leaks" in w]


# ------------------------------------------------------------------------------------------------ 22b: max_length


def test_max_length_above_the_model_limit_is_warned_and_recorded_as_used(ctx: Ctx) -> None:
    import yaml

    model = ctx.model_dir("short-bert")
    tok_cfg = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps({**tok_cfg, "model_max_length": 16}))
    cfg = ctx.config(model={"name_or_path": str(model)})  # data.max_length is 32
    result = CliRunner().invoke(cli, ["run", str(cfg), "--no-train"])
    assert result.exit_code == 0, result.output
    console = " ".join(result.stderr.split())
    assert "warning: `data.max_length` is 32, above the 16 tokens the model accepts: inputs were cut to 16" in console
    record = json.loads((ctx.out / "run.json").read_text())
    assert record["data"]["max_length"] == 16 and record["config"]["data"]["max_length"] == 16
    assert any("`data.max_length` is 32" in w for w in record["warnings"])
    written = yaml.safe_load((ctx.out / "config.yaml").read_text())
    assert written["data"]["max_length"] == 16  # config.yaml holds what was used
    # and re-running from it reproduces the run without the warning
    again = CliRunner().invoke(cli, ["run", str(ctx.out / "config.yaml"), "--no-train", "--output",
                                     str(ctx.tmp / "again")])
    assert again.exit_code == 0, again.output
    assert "data.max_length" not in again.stderr
    assert json.loads((ctx.tmp / "again" / "run.json").read_text())["data"]["max_length"] == 16


def test_max_length_within_the_limit_is_not_warned(ctx: Ctx) -> None:
    result = CliRunner().invoke(cli, ["run", str(ctx.config()), "--no-train"])
    assert result.exit_code == 0, result.output
    assert "data.max_length" not in result.stderr
    assert json.loads((ctx.out / "run.json").read_text())["config"]["data"]["max_length"] == 32


# ------------------------------------------------------------------------------------------ 22: a plan of years


def test_a_plan_of_years_is_warned_at_the_measured_step_time(make_config: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """num_epochs=1e9 is accepted, but after the first steps are timed the run says how long the plan would take,
    on the console and in run.json; here the user then stops it (SIGTERM) and the warning stays in the record."""
    import os
    import signal

    import cardgen.train

    real = cardgen.train.plan_warning

    def warn_then_stop(seconds_per_step: float, remaining_steps: int) -> str | None:
        warning = real(seconds_per_step, remaining_steps)
        os.kill(os.getpid(), signal.SIGTERM)  # what the user does on reading it
        return warning

    monkeypatch.setattr(cardgen.train, "plan_warning", warn_then_stop)
    out = tmp_path / "years"
    cfg = make_config(training={"num_epochs": 1e9, "learning_rate": 5e-3, "train_batch_size": 16, "seed": 7},
                      output={"dir": str(out)})
    result = CliRunner().invoke(cli, ["run", str(cfg)])
    assert result.exit_code == 130, result.output
    assert "more steps" in result.output and "days" in result.output
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "interrupted"
    assert any("days (check training.num_epochs" in w for w in rec["warnings"]), rec["warnings"]


def test_a_normal_plan_is_not_warned() -> None:
    from cardgen.train import plan_warning

    assert plan_warning(0.5, 10_000) is None
    assert "days" in (plan_warning(0.5, 10**9) or "")
