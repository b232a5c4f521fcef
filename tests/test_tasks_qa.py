"""Extractive QA: the official SQuAD metric on hand-made cases, windows and offsets, post-processing, a tiny run."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import write_jsonl

from cardgen.config import load_config

# ---------------------------------------------------------------------------------------------------------------
# The SQuAD metric


@pytest.mark.parametrize(("text", "normalised"), [
    ("The Eiffel Tower", "eiffel tower"),
    ("  an   apple, a pear!  ", "apple pear"),
    ("Theory of the Atom", "theory of atom"),  # only whole-word articles go; "Theory" stays
    ("U.S.A.", "usa"),
    ("", ""),
])
def test_normalize_answer(text: str, normalised: str) -> None:
    from cardgen.tasks.question_answering import normalize_answer

    assert normalize_answer(text) == normalised


@pytest.mark.parametrize(("prediction", "golds", "em", "f1"), [
    ("the Eiffel Tower", ["Eiffel Tower"], 1.0, 1.0),  # articles
    ("Paris!", ["paris"], 1.0, 1.0),  # punctuation and case
    ("PARIS", ["Paris"], 1.0, 1.0),
    ("in 1889", ["1889"], 0.0, 2 / 3),  # precision 1/2, recall 1
    ("1889", ["in 1889", "1889"], 1.0, 1.0),  # several gold answers: the best counts
    ("Gustave", ["Gustave Eiffel", "Eiffel"], 0.0, 2 / 3),
    ("London", ["Paris"], 0.0, 0.0),
    ("", [], 1.0, 1.0),  # unanswerable, predicted as such
    ("Paris", [], 0.0, 0.0),  # unanswerable, but an answer was given
    ("", ["Paris"], 0.0, 0.0),  # answerable, but no answer was given
    ("the", ["a"], 1.0, 1.0),  # both normalise to empty
])
def test_squad_scores_hand_made_cases(prediction: str, golds: list[str], em: float, f1: float) -> None:
    from cardgen.tasks.question_answering import squad_scores

    got_em, got_f1 = squad_scores(prediction, golds)
    assert got_em == em
    assert got_f1 == pytest.approx(f1)


def test_squad_metrics_aggregate_in_percent() -> None:
    from cardgen.tasks.question_answering import squad_metrics

    metrics = squad_metrics(["Paris", "in 1889", "", "Rome"], [["Paris"], ["1889"], [], []])
    assert metrics["exact_match"] == pytest.approx(50.0)
    assert metrics["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert metrics["has_answer_exact_match"] == pytest.approx(50.0)
    assert metrics["no_answer_exact_match"] == pytest.approx(50.0)
    assert "has_answer_f1" not in squad_metrics(["Paris"], [["Paris"]])


# ---------------------------------------------------------------------------------------------------------------
# Windows, offsets and post-processing

FILL = ["the", "movie", "was", "really", "quite", "good", "and", "the", "plot", "is", "very", "fine"]


def qa_rows(n: int, seed: int, unanswerable: float = 0.0, long_every: int = 0) -> list[dict[str, Any]]:
    """Contexts of filler words with one planted city, asked for with 'what capital ...'; a share has no city."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(FILL) for _ in range(rng.randint(6, 14) * (4 if long_every and i % long_every == 0
                                                                       else 1))]
        no_answer = rng.random() < unanswerable
        if not no_answer:
            pos = rng.randrange(len(words) + 1)
            words[pos:pos] = ["capital", "city", "paris"] if rng.random() < 0.5 else ["capital", "city", "france"]
        context = " ".join(words) + "."
        answers: dict[str, list[Any]] = {"text": [], "answer_start": []}
        if not no_answer:
            name = "paris" if "paris" in words else "france"
            start = context.index("capital city ") + len("capital city ")
            answers = {"text": [name, f"city {name}"], "answer_start": [start, start - len("city ")]}
        rows.append({"id": f"q{seed}-{i}", "question": "what capital city ?", "context": context, "answers": answers})
    return rows


def qa_config(model: Path, data: Path, out: Path, **sections: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "model": {"name_or_path": str(model)}, "task": "question-answering",
        "data": {"train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl"),
                 "test": str(data / "test.jsonl"), "max_length": 32, "name": "tiny qa"},
        "qa": {"doc_stride": 12, "max_answer_length": 5},
        "training": {"learning_rate": 5e-3, "num_epochs": 3, "train_batch_size": 16, "eval_batch_size": 32,
                     "seed": 1},
        "benchmark": {"enabled": False},
        "card": {"model_name": "tiny-qa", "base_model": "test-org/tiny-bert"},
        "output": {"dir": str(out)},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def test_windows_cover_long_contexts_and_offsets_map_back(tiny_bert: Path) -> None:
    import pandas as pd

    from cardgen.tasks import question_answering as qa
    from cardgen.tasks.question_answering import _normalise_frame, featurize

    cfg = load_config(data=qa_config(tiny_bert, tiny_bert, tiny_bert / "x"))
    loaded = qa.load_model(cfg)
    frame = _normalise_frame(pd.DataFrame(qa_rows(20, 5, long_every=2)), cfg, "test", "rows")
    feats = featurize(frame, loaded.tokenizer, cfg)
    assert len(feats.example) > len(frame)  # long contexts became several windows
    for f, ex in enumerate(feats.example):
        assert len(feats.inputs[f]["input_ids"]) <= 32
        context = frame["context"].iloc[ex]
        gold = frame["answers"].iloc[ex]["text"][0]
        s, e = feats.start_positions[f], feats.end_positions[f]
        if s == feats.cls_index[f]:
            # the answer is not (whole) in this window: its first character is outside the window's context span
            spans = [o for o in feats.offsets[f] if o is not None]
            start = frame["answers"].iloc[ex]["answer_start"][0]
            assert not (spans[0][0] <= start and spans[-1][1] >= start + len(gold))
        else:
            assert context[feats.offsets[f][s][0]:feats.offsets[f][e][1]] == gold  # type: ignore[index]
    # every example has a window that holds its answer
    assert {ex for f, ex in enumerate(feats.example) if feats.start_positions[f] != feats.cls_index[f]} == set(
        range(len(frame)))


def test_best_answers_n_best_max_length_and_null(tiny_bert: Path) -> None:
    import pandas as pd

    from cardgen.tasks.question_answering import Features, best_answers

    frame = pd.DataFrame({"context": ["aa bb cc dd"] * 2, "answers": [{"text": ["bb"], "answer_start": [3]}] * 2})
    offsets: list[tuple[int, int] | None] = [None, None, (0, 2), (3, 5), (6, 8), (9, 11), None]
    feats = Features(inputs=[{}, {}], example=[0, 1], offsets=[offsets, offsets], cls_index=[0, 0],
                     start_positions=[0, 0], end_positions=[0, 0])
    start = np.full((2, 7), -5.0)
    end = np.full((2, 7), -5.0)
    start[0, 3], end[0, 3] = 4.0, 4.0  # "bb"
    start[0, 1], end[0, 1] = 9.0, 9.0  # best logits on a question token: not an answer
    start[1, 2], end[1, 5] = 6.0, 6.0  # "aa bb cc dd" (score 12) is 4 tokens long
    start[1, 4], end[1, 4] = 2.0, 2.0  # so with at most 3 tokens "aa bb cc" (score 8) wins
    cfg = load_config(data=qa_config(tiny_bert, tiny_bert, tiny_bert / "x", qa={"max_answer_length": 3}))
    assert best_answers(frame, feats, start, end, cfg) == ["bb", "aa bb cc"]
    longer = load_config(data={**cfg.to_dict(), "qa": {**cfg.to_dict()["qa"], "max_answer_length": 4}})
    assert best_answers(frame, feats, start, end, longer) == ["bb", "aa bb cc dd"]
    start[:, 0], end[:, 0] = 5.0, 5.0  # null score 10 beats both spans
    assert best_answers(frame, feats, start, end, cfg) == ["bb", "aa bb cc"]  # SQuAD v1: always an answer
    v2 = load_config(data={**cfg.to_dict(), "qa": {**cfg.to_dict()["qa"], "version_2": True}})
    assert best_answers(frame, feats, start, end, v2) == ["", ""]


def test_official_nested_squad_json_and_bad_answers(tiny_bert: Path, tmp_path: Path) -> None:
    from cardgen.errors import DataError
    from cardgen.tasks import question_answering as qa

    nested = {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "the capital city paris.", "qas": [
        {"id": "a", "question": "what capital city ?", "answers": [{"text": "paris", "answer_start": 17}]},
        {"id": "b", "question": "what city ?", "answers": [{"text": "paris", "answer_start": 17},
                                                            {"text": "city paris", "answer_start": 12}]}]}]}]}
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.json").write_text(json.dumps(nested))
    cfg_dict = qa_config(tiny_bert, tmp_path, tmp_path / "out")
    cfg_dict["data"] = {**cfg_dict["data"], **{s: str(tmp_path / f"{s}.json") for s in ("train", "validation", "test")}}
    frames = qa.load_split_frames(load_config(data=cfg_dict), need_train=True)[0]
    assert frames["test"]["id"].tolist() == ["a", "b"]
    assert frames["test"]["answers"].iloc[1]["text"] == ["paris", "city paris"]
    bad = [{"id": "x", "question": "q ?", "context": "the city paris.", "answers": {"text": ["paris"],
                                                                                     "answer_start": [3]}}]
    write_jsonl(tmp_path / "bad.jsonl", bad)
    cfg_dict["data"]["test"] = str(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="answer_start"):
        qa.load_split_frames(load_config(data=cfg_dict), need_train=True)
    write_jsonl(tmp_path / "empty.jsonl", [{**bad[0], "answers": {"text": [], "answer_start": []}}])
    cfg_dict["data"]["test"] = str(tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="have no answer"):
        qa.load_split_frames(load_config(data=cfg_dict), need_train=True)


# ---------------------------------------------------------------------------------------------------------------
# End to end on the tiny BERT


@pytest.fixture(scope="module")
def qa_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cardgen.pipeline import run

    data = tmp_path_factory.mktemp("qa-data")
    write_jsonl(data / "train.jsonl", qa_rows(240, 1, unanswerable=0.15, long_every=5))
    write_jsonl(data / "validation.jsonl", qa_rows(40, 2, unanswerable=0.15, long_every=5))
    write_jsonl(data / "test.jsonl", qa_rows(60, 3, unanswerable=0.15, long_every=5))
    out = tmp_path_factory.mktemp("qa") / "run"
    return run(load_config(data=qa_config(tiny_bert, data, out, qa={"version_2": True}))).output_dir


def test_qa_run_record_card_and_learning(qa_run: Path) -> None:
    from huggingface_hub import ModelCard

    from cardgen.record import load_record
    from cardgen.tasks.question_answering import squad_scores

    record = load_record(qa_run)
    ev, base, tr = record.evaluation, record.base_evaluation, record.training
    assert ev is not None and base is not None and tr is not None
    assert base.extra["meaningful"] is False  # the tiny BERT has no QA head: the base's is random
    for row in tr.epochs:
        assert {"exact_match", "f1"} <= set(row.metrics)
    assert ev.metrics["f1"] > base.metrics["f1"] and ev.metrics["f1"] > 50
    # every number recomputes from the per-question predictions in run.json
    rows = [json.loads(line) for line in Path(record.config["data"]["test"]).read_text().splitlines()]
    golds = {r["id"]: r["answers"]["text"] for r in rows}
    scores = [squad_scores(a, golds[i]) for i, a in zip(ev.extra["ids"], ev.extra["answers"], strict=True)]
    assert ev.metrics["exact_match"] == pytest.approx(100 * np.mean([s[0] for s in scores]))
    assert ev.metrics["f1"] == pytest.approx(100 * np.mean([s[1] for s in scores]))
    card = ModelCard.load(qa_run / "README.md")
    assert card.data.pipeline_tag == "question-answering"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["exact_match"] == pytest.approx(round(ev.metrics["exact_match"], 4))
    assert results["f1"] == pytest.approx(round(ev.metrics["f1"], 4))
    text = (qa_run / "README.md").read_text()
    assert "| Training Loss | Epoch | Step | Validation Loss | Exact match | F1 |" in text
    assert "SQuAD v2" in text and "The base numbers are not meaningful" in text


def test_qa_epoch_metrics_are_the_final_method(qa_run: Path) -> None:
    import pandas as pd

    from cardgen.record import load_record
    from cardgen.tasks import question_answering as qa

    record = load_record(qa_run)
    assert record.training is not None
    cfg = load_config(qa_run / "config.yaml", [f"model.name_or_path={qa_run}"])
    loaded = qa.load_model(cfg)
    frame = qa.load_split_frames(cfg, need_train=True)[0]["validation"]
    assert isinstance(frame, pd.DataFrame)
    ev = qa.evaluate(loaded, frame, cfg, [], "check", "validation")
    best = next(r for r in record.training.epochs if r.step == record.training.best_step)
    assert best.metrics["exact_match"] == pytest.approx(ev.metrics["exact_match"])
    assert best.metrics["f1"] == pytest.approx(ev.metrics["f1"], abs=1e-6)


def test_doc_stride_must_fit_the_window(tiny_bert: Path, tmp_path: Path) -> None:
    from cardgen.errors import ConfigError
    from cardgen.pipeline import run

    write_jsonl(tmp_path / "d" / "train.jsonl", qa_rows(10, 1))
    for split in ("validation", "test"):
        write_jsonl(tmp_path / "d" / f"{split}.jsonl", qa_rows(4, 2))
    cfg = qa_config(tiny_bert, tmp_path / "d", tmp_path / "out", qa={"doc_stride": 32})
    with pytest.raises(ConfigError, match="doc_stride"):
        run(load_config(data=cfg))


def test_cli_compare_question_answering(qa_run: Path, tmp_path: Path) -> None:
    """`cardgen compare --task question-answering`: FT's qa settings from run.json, the test EM/F1 of the run."""
    from click.testing import CliRunner

    from cardgen.cli import cli
    from cardgen.record import load_record

    record = load_record(qa_run)
    assert record.evaluation is not None
    out = tmp_path / "c.json"
    result = CliRunner().invoke(cli, ["compare", str(qa_run), str(qa_run), "--task", "question-answering",
                                      "--data", record.config["data"]["test"], "-q", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = {r["key"]: r for r in json.loads(out.read_text())["metrics"]}
    assert rows["exact_match"]["fine_tuned"][0] == pytest.approx(record.evaluation.metrics["exact_match"])
    assert rows["f1"]["fine_tuned"][0] == pytest.approx(record.evaluation.metrics["f1"])
    assert rows["f1"]["delta"] == [0.0, 0.0, 0.0] and rows["f1"]["p_value"] == 1.0  # a model against itself
