"""The bad-input catalogue: every way a user can get a command wrong ends in ONE line ``Error: ... (hint: ...)``,
exit code 2, no traceback, and an output directory exactly as it was before.

Each case builds its inputs in ``tmp_path`` and returns the command line; the test snapshots the output directory
(names, bytes and modification times) before and after. Commands run in-process through Click's CliRunner, which
is what ``cardgen`` runs; one test repeats a case in a real subprocess to cover the console script itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import base_config, sentiment_rows, write_config, write_jsonl

from cardgen.cli import cli

# ------------------------------------------------------------------------------------------------ helpers


def snapshot(root: Path) -> dict[str, Any] | None:
    """Every path below ``root`` with its kind, content hash and mtime (None when ``root`` does not exist)."""
    if not root.exists():
        return None
    if root.is_file():
        return {".": ("file", hashlib.sha256(root.read_bytes()).hexdigest(), root.stat().st_mtime_ns)}
    snap: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            snap[rel] = ("dir", None, None)
        else:
            snap[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return snap


@dataclass
class Ctx:
    """What a case can build its inputs from."""

    tmp: Path
    bert: Path
    data: Path
    run_dir: Path  # a copy of a finished run, for `card` and `push`
    out: Path  # the directory whose state must not change

    def config(self, name: str = "config.yaml", **sections: Any) -> Path:
        return write_config(self.tmp / name, base_config(self.bert, self.data, self.out, **sections))

    def data_config(self, train: Path, **data: Any) -> Path:
        """A config whose only data is ``train`` (validation and test carved from it)."""
        section = {"train": str(train), "validation": None, "test": None, **data}
        cfg = base_config(self.bert, self.data, self.out)
        cfg["data"] = {k: v for k, v in {**cfg["data"], **section}.items() if v is not None}
        return write_config(self.tmp / "config.yaml", cfg)

    def model_dir(self, name: str, drop: tuple[str, ...] = (), **config_json: Any) -> Path:
        """A copy of the tiny BERT without ``drop`` files and with ``config_json`` merged into its config.json."""
        target = self.tmp / name
        shutil.copytree(self.bert, target)
        for f in drop:
            (target / f).unlink()
        if config_json:
            cfg = json.loads((target / "config.json").read_text())
            cfg.update(config_json)
            (target / "config.json").write_text(json.dumps(cfg))
        return target


@dataclass
class Case:
    """One bad input: ``build(ctx)`` returns the arguments after ``cardgen``; ``expect`` must be in the error."""

    id: str
    build: Callable[[Ctx], list[str]]
    expect: str
    watch: Callable[[Ctx], Path] | None = None  # default: see watched()


def run_args(ctx: Ctx, cfg: Path, *extra: str) -> list[str]:
    return ["run", str(cfg), *extra]


def _jsonl(ctx: Ctx, rows: list[dict[str, Any]], name: str = "train.jsonl") -> Path:
    return write_jsonl(ctx.tmp / "bad-data" / name, rows)


def _raw(ctx: Ctx, name: str, data: bytes) -> Path:
    path = ctx.tmp / "bad-data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _yaml_error(ctx: Ctx) -> list[str]:
    path = ctx.tmp / "broken.yaml"
    path.write_text("model:\n  name_or_path: x\ntraining:\n  learning_rate: [1e-5\n  seed: 3\n")
    return ["run", str(path)]


def _pickle_only(ctx: Ctx) -> list[str]:
    target = pickle_checkpoint(ctx.bert, ctx.tmp / "pickled")
    return run_args(ctx, ctx.config(model={"name_or_path": str(target)}))


def pickle_checkpoint(source: Path, target: Path) -> Path:
    """The tiny BERT with its weights as pytorch_model.bin (a pickle) and no safetensors file."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(source, target)
    weights = load_file(str(target / "model.safetensors"))
    (target / "model.safetensors").unlink()
    torch.save(weights, target / "pytorch_model.bin")
    return target


REMOTE_CODE = '''
from pathlib import Path
Path(MARKER).write_text("ran")
from transformers import BertConfig, BertForSequenceClassification


class CustomConfig(BertConfig):
    model_type = "cardgen-custom"


class CustomModel(BertForSequenceClassification):
    config_class = CustomConfig
'''


def remote_code_checkpoint(source: Path, target: Path) -> Path:
    """The tiny BERT declared as a custom architecture whose code lives in the checkpoint (auto_map).

    Importing that code writes ``target/REMOTE_CODE_RAN`` (transformers imports a copy from its modules cache, so
    the path is absolute), so a test can tell whether it ran.
    """
    shutil.copytree(source, target)
    (target / "custom.py").write_text(REMOTE_CODE.replace("MARKER", repr(str(target / "REMOTE_CODE_RAN"))))
    cfg = json.loads((target / "config.json").read_text())
    cfg.update(model_type="cardgen-custom", architectures=["CustomModel"],
               auto_map={"AutoConfig": "custom.CustomConfig",
                         "AutoModelForSequenceClassification": "custom.CustomModel"})
    (target / "config.json").write_text(json.dumps(cfg))
    return target


def _remote_code(ctx: Ctx) -> list[str]:
    target = remote_code_checkpoint(ctx.bert, ctx.tmp / "custom")
    return run_args(ctx, ctx.config(model={"name_or_path": str(target)}))


def _task_mismatch(ctx: Ctx) -> list[str]:
    """An image model (ViT) has no sequence-classification head for text."""
    from transformers import ViTConfig, ViTModel

    target = ctx.tmp / "vit"
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=8, patch_size=4)
    ViTModel(config).save_pretrained(target)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ctx.bert / f, target / f)
    return run_args(ctx, ctx.config(model={"name_or_path": str(target)}))


def _non_empty_out(ctx: Ctx) -> list[str]:
    ctx.out.mkdir(parents=True)
    (ctx.out / "notes.txt").write_text("my notes\n")
    return run_args(ctx, ctx.config())


def _out_is_file(ctx: Ctx) -> list[str]:
    ctx.out.parent.mkdir(parents=True, exist_ok=True)
    ctx.out.write_text("a file\n")
    return run_args(ctx, ctx.config())


def _out_below_file(ctx: Ctx) -> list[str]:
    blocker = ctx.out
    blocker.write_text("a file where a directory should be\n")
    return run_args(ctx, ctx.config(), "--output", str(blocker / "run"))


def _unwritable(ctx: Ctx, existing: bool) -> list[str]:
    parent = ctx.tmp / "locked"
    parent.mkdir()
    if existing:
        ctx.out = parent
        make_unwritable(parent)
        return run_args(ctx, ctx.config(), "--output", str(parent))
    ctx.out = parent
    make_unwritable(parent)
    return run_args(ctx, ctx.config(), "--output", str(parent / "run"))


_UNLOCK: list[Callable[[], None]] = []


def make_unwritable(path: Path) -> None:
    """chmod 555 for a normal user; root ignores modes, so there the directory is made immutable (chattr +i)."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        _UNLOCK.append(lambda: path.chmod(0o755))
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("running as root without chattr: no directory can be made unwritable")
    _UNLOCK.append(lambda: subprocess.run(["chattr", "-i", str(path)], check=False))


def _template(ctx: Ctx, text: str) -> list[str]:
    tpl = ctx.tmp / "card.md.j2"
    tpl.write_text(text)
    return ["card", str(ctx.run_dir), "--template", str(tpl)]


def _corrupt_record(ctx: Ctx) -> list[str]:
    (ctx.run_dir / "run.json").write_text('{"schema_version": "1.0", "config": {')
    return ["card", str(ctx.run_dir)]


def _future_record(ctx: Ctx) -> list[str]:
    record = json.loads((ctx.run_dir / "run.json").read_text())
    record["schema_version"] = "9.0"
    (ctx.run_dir / "run.json").write_text(json.dumps(record))
    return ["card", str(ctx.run_dir)]


def _compare(ctx: Ctx, *args: str) -> list[str]:
    return ["compare", str(ctx.bert), str(ctx.run_dir), *args, "--json", str(ctx.tmp / "cmp.json"),
            "--markdown", str(ctx.tmp / "cmp.md"), "-q"]


def _resume_completed(ctx: Ctx) -> list[str]:
    shutil.rmtree(ctx.out, ignore_errors=True)
    shutil.copytree(ctx.run_dir, ctx.out)
    return run_args(ctx, ctx.config(), "--resume")


# ------------------------------------------------------------------------------------------------ generation tasks


def _generation_config(ctx: Ctx, model: Path, task: str = "seq2seq", rows: list[dict[str, Any]] | None = None,
                       **sections: Any) -> Path:
    """A seq2seq (or instruction causal-LM) config over toy translation pairs (``rows`` replace the train split)."""
    from generation_data import write_translation_data

    data = write_translation_data(ctx.tmp / "pairs", train=24, validation=8, test=8)
    if rows is not None:
        write_jsonl(data / "train.jsonl", rows)
    defaults: dict[str, Any] = {"seq2seq": {"max_source_length": 32}, "generation": {"max_new_tokens": 8}}
    merged = {k: {**defaults.get(k, {}), **v} for k, v in sections.items()}
    cfg = base_config(model, data, ctx.out, task=task, **{**defaults, **merged})
    cfg["data"] = {k: v for k, v in cfg["data"].items() if k != "label_names"}
    return write_config(ctx.tmp / "config.yaml", cfg)


def _t5(ctx: Ctx) -> Path:
    from generation_data import build_tiny_t5

    return build_tiny_t5(ctx.tmp / "t5")


def _chat_lm(ctx: Ctx, chat_template: bool = True) -> Path:
    from generation_data import build_tiny_chat_lm

    return build_tiny_chat_lm(ctx.tmp / "lm", chat_template=chat_template)


def _instruction(ctx: Ctx, lm: Path, rows: list[dict[str, Any]] | None = None, **instruction: Any) -> list[str]:
    section = {"prompt_column": "source", "completion_column": "target", "chat_template": True, **instruction}
    return run_args(ctx, _generation_config(ctx, lm, "causal-lm", rows, instruction=section))


def _offline_metric(ctx: Ctx) -> list[str]:
    os.environ["HF_EVALUATE_OFFLINE"] = "1"
    _UNLOCK.append(lambda: os.environ.pop("HF_EVALUATE_OFFLINE", None))
    return run_args(ctx, _generation_config(ctx, _t5(ctx), generation={"metrics": ["bleu", "evaluate:bertscore"]}))


PAIRS_WITHOUT_SOURCE = [{"en": "the house", "target": "das haus"}] * 20
PAIRS_WITHOUT_TARGET = [{"source": "the house", "de": "das haus"}] * 20
PAIRS_WITH_EMPTY_REFERENCE = [{"source": "the house is big", "target": "das haus ist gross"}] * 20 + [
    {"source": "the file", "target": "  "}]

CASES = [
    # generation tasks (seq2seq, instruction-tuned causal LM)
    Case("seq2seq-missing-source-column",
         lambda c: run_args(c, _generation_config(c, _t5(c), rows=PAIRS_WITHOUT_SOURCE)), "set seq2seq.source_column"),
    Case("seq2seq-missing-target-column",
         lambda c: run_args(c, _generation_config(c, _t5(c), rows=PAIRS_WITHOUT_TARGET)), "column 'target' is missing"),
    Case("seq2seq-empty-reference",
         lambda c: run_args(c, _generation_config(c, _t5(c), rows=PAIRS_WITH_EMPTY_REFERENCE)),
         "1 empty reference(s) in column 'target'"),
    Case("seq2seq-not-a-seq2seq-checkpoint", lambda c: run_args(c, _generation_config(c, c.bert)),
         "seq2seq.encoder_decoder: true"),
    Case("seq2seq-decoder-only-checkpoint", lambda c: run_args(c, _generation_config(c, _chat_lm(c))),
         "use task: causal-lm with instruction"),
    Case("seq2seq-encoder-decoder-of-a-seq2seq-model",
         lambda c: run_args(c, _generation_config(c, _t5(c), seq2seq={"encoder_decoder": True})),
         "already an encoder-decoder"),
    Case("seq2seq-source-longer-than-the-model",
         lambda c: run_args(c, _generation_config(c, c.bert, seq2seq={"encoder_decoder": True,
                                                                      "max_source_length": 500})),
         "`seq2seq.max_source_length` is 500 tokens"),
    Case("instruction-missing-prompt-column", lambda c: _instruction(c, _chat_lm(c), rows=PAIRS_WITHOUT_SOURCE),
         "set instruction.prompt_column"),
    Case("instruction-missing-completion-column",
         lambda c: _instruction(c, _chat_lm(c), rows=PAIRS_WITHOUT_TARGET), "set instruction.completion_column"),
    Case("instruction-empty-reference", lambda c: _instruction(c, _chat_lm(c), rows=PAIRS_WITH_EMPTY_REFERENCE),
         "empty reference"),
    Case("instruction-chat-template-missing", lambda c: _instruction(c, _chat_lm(c, chat_template=False)),
         "has no chat template"),
    Case("instruction-template-without-prompt", lambda c: _instruction(c, _chat_lm(c), template="Translate:"),
         "`instruction.template` must contain {prompt}"),
    Case("generation-max-new-tokens-zero",
         lambda c: run_args(c, _generation_config(c, _t5(c)), "--set", "generation.max_new_tokens=0"),
         "`generation.max_new_tokens` must be in [1, 4096] (got 0)"),
    Case("generation-num-beams-zero",
         lambda c: run_args(c, _generation_config(c, _t5(c)), "--set", "generation.num_beams=0"),
         "`generation.num_beams` must be >= 1"),
    Case("generation-top-p-out-of-range",
         lambda c: run_args(c, _generation_config(c, _t5(c)), "--set", "generation.top_p=1.5"),
         "`generation.top_p` must be in (0, 1]"),
    Case("generation-unknown-metric",
         lambda c: run_args(c, _generation_config(c, _t5(c)), "--set", "generation.metrics=[bleu, meteor]"),
         "'evaluate:NAME' (got 'meteor')"),
    Case("generation-new-tokens-beyond-the-decoder",
         lambda c: run_args(c, _generation_config(c, c.bert, seq2seq={"encoder_decoder": True},
                                                  generation={"max_new_tokens": 400})),
         "`generation.max_new_tokens` (400) after the decoder's start token is 401 tokens"),
    Case("generation-evaluate-metric-offline", _offline_metric, "cannot load the evaluate metric 'bertscore'"),
    Case("compare-seq2seq-base-not-seq2seq",
         lambda c: _compare(c, "--data", str(c.data / "test.jsonl"), "--task", "seq2seq"),
         "not a seq2seq", watch=lambda c: c.tmp / "cmp.json"),
    # config
    Case("config-missing-file", lambda c: ["run", str(c.tmp / "nope.yaml")], "does not exist"),
    Case("config-yaml-syntax", _yaml_error, "line 5"),
    Case("config-not-a-mapping", lambda c: ["run", str(_raw(c, "list.yaml", b"- a\n- b\n"))], "mapping"),
    Case("config-unknown-key", lambda c: run_args(c, c.config(training={"learnig_rate": 1e-3})),
         "did you mean 'learning_rate'"),
    Case("config-unknown-section", lambda c: run_args(c, c.config(trainer={"seed": 1})), "did you mean 'training'"),
    Case("config-unknown-task", lambda c: run_args(c, c.config(task="text-clasification")),
         "did you mean 'text-classification'"),
    Case("config-wrong-type", lambda c: run_args(c, c.config(training={"num_epochs": "three"})), "must be a number"),
    Case("config-wrong-type-bool", lambda c: run_args(c, c.config(output={"overwrite": "maybe"})),
         "true or false"),
    Case("config-negative-learning-rate", lambda c: run_args(c, c.config(), "--set", "training.learning_rate=-1"),
         "`training.learning_rate` must be > 0"),
    Case("config-zero-epochs", lambda c: run_args(c, c.config(training={"num_epochs": 0})),
         "`training.num_epochs` must be > 0"),
    Case("config-zero-batch-size", lambda c: run_args(c, c.config(training={"train_batch_size": 0})),
         "`training.train_batch_size` must be >= 1"),
    Case("config-bad-set-syntax", lambda c: run_args(c, c.config(), "--set", "training.learning_rate"),
         "not key=value"),
    Case("config-bad-extra-arg", lambda c: run_args(c, c.config(training={"extra_args": {"not_an_arg": 1}})),
         "not_an_arg"),
    Case("conflict-resume-and-overwrite", lambda c: run_args(c, c.config(), "--resume", "--overwrite"),
         "--resume and --overwrite"),
    Case("conflict-resume-without-training", lambda c: run_args(c, c.config(), "--resume", "--no-train"),
         "--resume"),
    Case("resume-nothing-to-resume", lambda c: run_args(c, c.config(), "--resume"), "no checkpoint"),
    Case("resume-completed-run", _resume_completed, "no checkpoint"),
    # data
    Case("data-missing-file", lambda c: run_args(c, c.data_config(c.tmp / "missing.jsonl")), "does not exist"),
    Case("data-unsupported-format", lambda c: run_args(c, c.data_config(_raw(c, "train.xlsx", b"PK\x03\x04"))),
         "unsupported data file format .xlsx"),
    Case("data-empty-file", lambda c: run_args(c, c.data_config(_raw(c, "train.csv", b""))), "is empty"),
    Case("data-header-only", lambda c: run_args(c, c.data_config(_raw(c, "train.csv", b"text,label\n"))),
         "no examples"),
    Case("data-not-jsonl", lambda c: run_args(c, c.data_config(_raw(c, "train.jsonl", b'{"text": "a", \n'))),
         "cannot read"),
    Case("data-missing-text-column",
         lambda c: run_args(c, c.data_config(_jsonl(c, [{"sentence": "good", "label": "positive"}] * 20))),
         "column 'text' is missing"),
    Case("data-missing-label-column",
         lambda c: run_args(c, c.data_config(_jsonl(c, [{"text": "good", "y": "positive"}] * 20))),
         "column 'label' is missing"),
    Case("data-label-outside-names",
         lambda c: run_args(c, c.data_config(_jsonl(c, sentiment_rows(40, 1) + [{"text": "meh", "label": "neutral"}]))),
         "'neutral' (row 41)"),
    Case("data-single-class",
         lambda c: run_args(c, c.data_config(_jsonl(c, [{"text": "good film", "label": "positive"}] * 30),
                                             label_names=None)),
         "only one class"),
    Case("data-not-utf8", lambda c: run_args(c, c.data_config(_raw(c, "train.csv",
                                                                    b"text,label\ngood,positive\nbad \xff,negative\n"))),
         "not UTF-8 text (byte 0xff on line 3)"),
    Case("data-empty-texts",
         lambda c: run_args(c, c.data_config(_jsonl(c, sentiment_rows(30, 1) + [{"text": "  ", "label": "positive"}]))),
         "rows 31"),
    Case("data-too-few-examples",
         lambda c: run_args(c, c.data_config(_jsonl(c, sentiment_rows(1, 1)))), "too few"),
    Case("data-bad-eval-split", lambda c: run_args(c, c.config(evaluation={"split": "holdout"})),
         "`evaluation.split` 'holdout' does not exist"),
    # model
    Case("model-missing-path", lambda c: run_args(c, c.config(model={"name_or_path": str(c.tmp / "no-model")})),
         "does not exist"),
    Case("model-not-a-model-dir", lambda c: run_args(c, c.config(model={"name_or_path": str(c.data)})),
         "not a model directory"),
    Case("model-path-is-a-file",
         lambda c: run_args(c, c.config(model={"name_or_path": str(c.data / "train.jsonl")})), "not a directory"),
    Case("model-no-weights", lambda c: run_args(c, c.config(model={"name_or_path": str(
        c.model_dir("noweights", drop=("model.safetensors",)))})), "no model weights"),
    Case("model-missing-tokenizer", lambda c: run_args(c, c.config(model={"name_or_path": str(
        c.model_dir("notok", drop=("tokenizer.json", "tokenizer_config.json")))})), "tokenizer"),
    Case("model-broken-config-json", lambda c: run_args(c, c.config(model={"name_or_path": str(
        c.model_dir("badcfg", model_type="no-such-architecture"))})), "no-such-architecture"),
    Case("model-task-mismatch", _task_mismatch, "does not support this task"),
    Case("model-pickle-only", _pickle_only, "--allow-pickle"),
    Case("model-needs-remote-code", _remote_code, "trust_remote_code"),
    # output
    Case("output-not-empty", _non_empty_out, "is not empty"),
    Case("output-is-a-file", _out_is_file, "is a file"),
    Case("output-below-a-file", _out_below_file, "output"),
    Case("output-unwritable-dir", lambda c: _unwritable(c, existing=True), "not writable"),
    Case("output-unwritable-parent", lambda c: _unwritable(c, existing=False), "not writable"),
    # templates (`card --template`, and a template named in the config: checked before training)
    Case("template-syntax-error", lambda c: _template(c, "# {{ model_name }}\n\n{% for x in results %}\n{{ x }\n"),
         "syntax error on line 4"),
    Case("template-undefined-variable", lambda c: _template(c, "# {{ model_name }}\n{{ no_such_value }}\n"),
         "'no_such_value' is undefined"),
    Case("template-missing-file", lambda c: ["card", str(c.run_dir), "--template", str(c.tmp / "none.j2")],
         "does not exist"),
    Case("template-bad-include", lambda c: _template(c, "{% include '../../etc/passwd' %}"), "does not exist"),
    Case("run-template-syntax-error", lambda c: run_args(c, c.config(card={"template": str(
        _raw(c, "t.md.j2", b"line one\n{% if %}\n"))})), "syntax error on line 2"),
    Case("card-no-record", lambda c: ["card", str(c.tmp)], "no run record"),
    Case("card-corrupt-record", _corrupt_record, "not valid JSON"),
    Case("card-newer-schema", _future_record, "schema version 9.0"),
    # compare, lint, bench (nothing may be written to --json / --markdown)
    Case("compare-missing-data", lambda c: _compare(c, "--data", str(c.tmp / "nope.jsonl")), "does not exist",
         watch=lambda c: c.tmp / "cmp.json"),
    Case("compare-missing-label-column", lambda c: _compare(c, "--data", str(c.data / "test.jsonl"),
                                                            "--label-column", "y"), "column 'y'",
         watch=lambda c: c.tmp / "cmp.json"),
    Case("compare-bad-confidence", lambda c: _compare(c, "--data", str(c.data / "test.jsonl"), "--confidence", "2"),
         "confidence", watch=lambda c: c.tmp / "cmp.json"),
    Case("compare-too-few-bootstrap", lambda c: _compare(c, "--data", str(c.data / "test.jsonl"), "--bootstrap", "3"),
         "--bootstrap", watch=lambda c: c.tmp / "cmp.json"),
    Case("compare-unknown-task", lambda c: _compare(c, "--data", str(c.data / "test.jsonl"), "--task", "causal_lm"),
         "--task causal-lm", watch=lambda c: c.tmp / "cmp.json"),
    Case("compare-mlm-base-without-head", lambda c: _compare(c, "--data", str(c.data / "test.jsonl"), "--task",
                                                             "masked-lm"),
         "no trained MLM head", watch=lambda c: c.tmp / "cmp.json"),
    Case("lint-missing-card", lambda c: ["lint", str(c.tmp / "nope.md")], "no model card"),
    Case("bench-bad-batch-sizes", lambda c: ["bench", str(c.bert), "--batch-sizes", "a,b"], "--batch-sizes"),
    Case("bench-bad-precision", lambda c: ["bench", str(c.bert), "--precision", "fp8"], "--precision"),
    # Hub
    Case("push-no-token", lambda c: ["push", str(c.run_dir), "--repo-id", "alice/tiny"], "no Hugging Face token"),
    Case("push-malformed-repo-id", lambda c: ["push", str(c.run_dir), "--repo-id", "not a repo"],
         "must look like NAMESPACE/NAME"),
    Case("push-repo-id-without-namespace", lambda c: ["push", str(c.run_dir), "--repo-id", "tiny"],
         "must look like NAMESPACE/NAME"),
    Case("push-not-a-run", lambda c: ["push", str(c.tmp / "empty"), "--repo-id", "alice/tiny", "--token", "hf_x"],
         "not found"),
    Case("push-pr-onto-pr", lambda c: ["push", str(c.run_dir), "--repo-id", "alice/tiny", "--create-pr",
                                       "--revision", "refs/pr/1", "--token", "hf_x"], "--create-pr"),
]


@pytest.fixture()
def ctx(tiny_bert: Path, tiny_data: Path, tiny_run: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Ctx]:
    from huggingface_hub import constants

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    (tmp_path / "empty").mkdir()
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # `--debug` sets CARDGEN_DEBUG in os.environ; setenv first so monkeypatch removes it again afterwards.
    monkeypatch.setenv("CARDGEN_DEBUG", "")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens"))
    monkeypatch.chdir(tmp_path)
    import transformers.dynamic_module_utils as dmu  # remote code is copied here before it is imported

    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    yield Ctx(tmp=tmp_path, bert=tiny_bert, data=tiny_data, run_dir=run_dir, out=tmp_path / "out")
    while _UNLOCK:
        _UNLOCK.pop()()


def watched(case: Case, args: list[str], ctx: Ctx) -> Path:
    """The directory the case must leave alone: the run directory for card/push, else the run's output."""
    if case.watch is not None:
        return case.watch(ctx)
    if args[0] in ("lint", "bench"):
        return ctx.tmp  # nothing at all may appear
    if args[0] in ("card", "push"):
        return ctx.run_dir if str(ctx.run_dir) in args else Path(args[1])
    if "--output" in args:
        return Path(args[args.index("--output") + 1])
    return ctx.out


def assert_one_line_error(output: str, expect: str) -> str:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    line = errors[0]
    assert "(hint: " in line and line.endswith(")"), line
    assert expect.lower() in line.lower(), f"{expect!r} not in {line!r}"
    return line


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, ctx: Ctx) -> None:
    args = case.build(ctx)
    target = watched(case, args, ctx)
    before = snapshot(target)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert_one_line_error(result.stderr, case.expect)
    assert result.stdout == ""
    assert snapshot(target) == before, f"{target} changed"
    if case.id == "model-needs-remote-code":
        assert not (ctx.tmp / "custom" / "REMOTE_CODE_RAN").exists(), "remote code ran without trust_remote_code"


def test_catalogue_size() -> None:
    commands = {c.id.split("-")[0] for c in CASES}
    assert len(CASES) >= 30
    assert {"config", "data", "model", "output", "template", "card", "push", "compare", "lint", "bench", "seq2seq",
            "instruction", "generation"} <= commands


def test_debug_shows_the_traceback(ctx: Ctx) -> None:
    args = run_args(ctx, ctx.config(training={"learning_rate": -1}))
    result = CliRunner().invoke(cli, ["--debug", *args])
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "ConfigError"


def test_console_script_in_a_subprocess(ctx: Ctx) -> None:
    """The real entry point: stderr is one line, stdout is empty, exit code 2."""
    cfg = ctx.config(training={"learnig_rate": 1e-3})
    env = {k: v for k, v in os.environ.items() if k != "CARDGEN_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "cardgen", "run", str(cfg)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert_one_line_error(proc.stderr, "did you mean 'learning_rate'")
    with_debug = subprocess.run([sys.executable, "-m", "cardgen", "--debug", "run", str(cfg)], capture_output=True,
                                text=True, env=env, timeout=120)
    assert with_debug.returncode != 0 and "Traceback" in with_debug.stderr


# ------------------------------------------------------------------------------------------------ not errors


def test_overlong_texts_are_truncated_counted_and_reported(ctx: Ctx) -> None:
    rows = sentiment_rows(60, 5)
    long = " ".join(["the movie was really quite good"] * 40)  # ~200 tokens, max_length is 32
    rows += [{"text": long, "label": "positive"}] * 3
    train = _jsonl(ctx, rows)
    test = _jsonl(ctx, [{"text": long, "label": "negative"}] * 2 + sentiment_rows(10, 6), "test.jsonl")
    cfg = ctx.data_config(train, test=str(test))
    result = CliRunner().invoke(cli, ["run", str(cfg), "--no-train"])
    assert result.exit_code == 0, result.output
    record = json.loads((ctx.out / "run.json").read_text())
    assert record["data"]["splits"]["test"]["num_truncated"] == 2
    truncated = sum(s["num_truncated"] for s in record["data"]["splits"].values())
    assert truncated == 5
    assert any("truncated" in w for w in record["warnings"])
    assert "truncated" in result.stderr  # the user sees it during the run
    card = (ctx.out / "README.md").read_text()
    assert "were truncated" in card


def test_pickle_checkpoint_loads_when_allowed(ctx: Ctx) -> None:
    target = pickle_checkpoint(ctx.bert, ctx.tmp / "pickled")
    cfg = ctx.config(model={"name_or_path": str(target)})
    result = CliRunner().invoke(cli, ["run", str(cfg), "--no-train", "--allow-pickle", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((ctx.out / "run.json").read_text())["config"]["model"]["allow_pickle"] is True


def test_safetensors_preferred_over_pickle(ctx: Ctx) -> None:
    """A checkpoint with both formats loads from safetensors even when pickle is allowed: a poisoned .bin
    (here: garbage bytes) is never opened."""
    target = ctx.model_dir("both")
    (target / "pytorch_model.bin").write_bytes(b"not a pickle at all")
    cfg = ctx.config(model={"name_or_path": str(target)})
    for extra in ([], ["--allow-pickle"]):
        shutil.rmtree(ctx.out, ignore_errors=True)
        result = CliRunner().invoke(cli, ["run", str(cfg), "--no-train", "-q", *extra])
        assert result.exit_code == 0, result.output


def test_trust_remote_code_when_asked_runs_the_code_and_says_so(ctx: Ctx) -> None:
    target = remote_code_checkpoint(ctx.bert, ctx.tmp / "custom")
    cfg = ctx.config(model={"name_or_path": str(target), "trust_remote_code": True})
    result = CliRunner().invoke(cli, ["run", str(cfg), "--no-train", "-q"])
    assert result.exit_code == 0, result.output
    assert (target / "REMOTE_CODE_RAN").exists()
    record = json.loads((ctx.out / "run.json").read_text())
    assert record["model"]["trust_remote_code"] is True
    assert "trust_remote_code=True" in (ctx.out / "README.md").read_text()
    # and the default card of a normal run does not
    assert "trust_remote_code=True" not in (ctx.run_dir / "README.md").read_text()


def test_config_file_is_yaml_mapping_round_trip(ctx: Ctx) -> None:
    """Sanity check of the helper the catalogue relies on: the base config itself is valid."""
    from cardgen.config import load_config

    cfg = load_config(ctx.config())
    assert yaml.safe_load((ctx.tmp / "config.yaml").read_text())["task"] == cfg.task
