"""A stranger reproduces the card's causal-LM perplexity: the card names the token stream exactly (method line and
the metric's model-index ``args``), and the plain transformers + torch code in its details, executed here on a tiny
model and the test texts, prints the card's perplexity and bits per byte."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_tasks_lm import build_tiny_gpt2, lm_config, write_lm_splits

from cardgen.config import load_config


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lm_splits(tmp_path_factory.mktemp("texts"), 120, 20, 37)


@pytest.fixture(scope="module")
def run_dir(gpt2_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cardgen.pipeline import run

    out = tmp_path_factory.mktemp("repro") / "run"
    cfg = lm_config(gpt2_dir, data_dir, out, "causal-lm", lm={"block_size": 24, "stride": 10},
                    training={"num_epochs": 1})
    return run(load_config(data=cfg)).output_dir


def snippet(card: str) -> str:
    """The code block under "Reproduce these numbers"."""
    details = card[card.index("Reproduce these numbers"):]
    return details[details.index("```python\n") + len("```python\n"):details.index("```\n\n</details>")]


def execute(code: str, model: Path, texts: list[str]) -> tuple[float, float]:
    """Run the card's code as a stranger would, with MODEL and texts filled in; what it prints."""
    assert code.count('MODEL = "."') == 1 and code.count("texts = [...]") == 1
    code = code.replace('MODEL = "."', f"MODEL = {str(model)!r}").replace("texts = [...]", f"texts = {texts!r}")
    assert "cardgen" not in re.sub(r"#.*", "", code)  # plain transformers + torch, nothing of cardgen
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "card-snippet", "exec"), {"__name__": "__main__"})  # noqa: S102
    found = re.fullmatch(r"perplexity (\S+), bits per byte (\S+)\n", out.getvalue())
    assert found, out.getvalue()
    return float(found[1]), float(found[2])


def test_the_cards_code_reproduces_its_perplexity_and_bits_per_byte(run_dir: Path, data_dir: Path) -> None:
    card = (run_dir / "README.md").read_text()
    raw = json.loads((run_dir / "run.json").read_text())
    metrics = raw["evaluation"]["metrics"]
    texts = [json.loads(line)["text"] for line in (data_dir / "test.jsonl").read_text().splitlines()]
    ppl, bpb = execute(snippet(card), run_dir, texts)
    assert f"- Perplexity: {ppl:.4f}" in card and f"- Bits per byte: {bpb:.4f}" in card
    assert ppl == pytest.approx(metrics["perplexity"], rel=1e-4, abs=6e-5)
    assert bpb == pytest.approx(metrics["bits_per_byte"], rel=1e-4, abs=6e-5)
    assert f"prints `perplexity {ppl:.4f}, bits per byte {bpb:.4f}`" in card


def test_the_card_and_model_index_name_the_token_stream(run_dir: Path) -> None:
    from huggingface_hub import ModelCard

    card = (run_dir / "README.md").read_text()
    assert ("each text tokenised on its own without special tokens, with `\\n\\n` appended to every text but the "
            "last, after one start token `<|endoftext|>` (id 0) that is context only") in card
    assert "Sliding window of 24 tokens advancing by 10" in card
    stream = {"tokenization": "each text on its own, no special tokens, separator appended to all but the last",
              "separator": "\n\n", "start_token": "<|endoftext|>", "start_token_id": 0, "window": 24, "stride": 10}
    results = {r.metric_type: r for r in ModelCard.load(run_dir / "README.md").data.eval_results}
    assert results["perplexity"].metric_args == stream and results["bits_per_byte"].metric_args == stream


def test_the_code_without_a_start_token(gpt2_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    """A tokenizer without BOS and EOS: no start token, the first token is context only and its bytes not counted."""
    import pandas as pd
    from transformers import AutoTokenizer

    from cardgen.card.reproduction import perplexity_code
    from cardgen.tasks import causal_lm

    model_dir = tmp_path / "no-start"
    shutil.copytree(gpt2_dir, model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.bos_token = tok.eos_token = None
    tok.save_pretrained(model_dir)
    cfg = load_config(data=lm_config(model_dir, data_dir, tmp_path / "out", "causal-lm",
                                     lm={"block_size": 16, "stride": 5}))
    loaded = causal_lm.load_model(cfg)
    assert causal_lm.start_token_id(loaded.tokenizer) is None
    frame = pd.read_json(data_dir / "test.jsonl", lines=True)
    ev = causal_lm.evaluate(loaded, frame, cfg, [], "model", "test")
    assert "start_token" not in ev.extra["stream"] and "without a start token" in ev.extra["method"]
    record: Any = SimpleNamespace(evaluation=ev, model=SimpleNamespace(task="causal-lm"))
    code = perplexity_code(record)
    assert code is not None
    ppl, bpb = execute(code["code"], model_dir, frame["text"].tolist())
    assert ppl == pytest.approx(ev.metrics["perplexity"], rel=1e-4, abs=6e-5)
    assert bpb == pytest.approx(ev.metrics["bits_per_byte"], rel=1e-4, abs=6e-5)
