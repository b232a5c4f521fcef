"""Examples from the evaluation split for the card: a few per label (right and wrong answers), and the texts
the Hub's inference widget starts with. Picked once at run time, stored in run.json (``RunRecord.examples``), so
the card stays a pure function of the record."""

from __future__ import annotations

import random
from typing import Any

from cardgen.record import CardExample, EvaluationRecord

MAX_CHARS = 300  # texts are cut here in the record; the card shortens them further
CONTEXT_CHARS = 1000


def _cut(text: Any, limit: int = MAX_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def pick_examples(task: str, frame: Any, evaluation: EvaluationRecord | None, label_names: list[str],
                  per_label: int, seed: int = 0) -> list[CardExample]:
    """Up to ``per_label`` examples of each gold label (classification: correct ones and mistakes, half and
    half where the split has both), or ``per_label`` examples of the split for the other tasks; seeded.

    Args:
        task: The run's task.
        frame: The evaluation split as the task prepared it (``text``/``label`` columns; QA: ``question``,
            ``context``, ``answers``).
        evaluation: The model's evaluation on that split (its predictions, in the frame's order).
        label_names: Class names by label id.
        per_label: Examples per label (0: none).
        seed: Seed of the choice.
    """
    if per_label <= 0 or frame is None or len(frame) == 0:
        return []
    rng = random.Random(seed)
    if task == "text-classification":
        return _classification(frame, evaluation, label_names, per_label, rng)
    if task == "question-answering":
        predicted = evaluation.extra.get("answers", []) if evaluation is not None else []
        rows = sorted(rng.sample(range(len(frame)), min(per_label, len(frame))))
        return [CardExample(index=i, text=_cut(frame["question"].iloc[i]),
                            label=_cut((list(frame["answers"].iloc[i]["text"]) or [""])[0]),
                            predicted=_cut(predicted[i]) if i < len(predicted) else "",
                            context=_cut(frame["context"].iloc[i], CONTEXT_CHARS)) for i in rows]
    if "text" not in frame:
        return []
    rows = sorted(rng.sample(range(len(frame)), min(per_label, len(frame))))
    return [CardExample(index=i, text=_cut(frame["text"].iloc[i])) for i in rows]


def _classification(frame: Any, evaluation: EvaluationRecord | None, label_names: list[str], per_label: int,
                    rng: random.Random) -> list[CardExample]:
    labels = [int(v) for v in frame["label"].tolist()]
    predictions = list(evaluation.predictions) if evaluation is not None else []
    if len(predictions) != len(labels):
        predictions = []

    def name(i: int) -> str:
        return label_names[i] if 0 <= i < len(label_names) else str(i)

    picked: list[int] = []
    for gold in range(len(label_names)):
        rows = [i for i, y in enumerate(labels) if y == gold]
        right = [i for i in rows if predictions and predictions[i] == gold]
        wrong = [i for i in rows if predictions and predictions[i] != gold]
        if not predictions:
            right = rows
        rng.shuffle(right)
        rng.shuffle(wrong)
        n_wrong = min(len(wrong), per_label // 2)
        chosen = right[: per_label - n_wrong]
        chosen += wrong[: per_label - len(chosen)]
        picked += sorted(chosen)
    texts = frame["text"].tolist()
    pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
    return [CardExample(index=i, text=_cut(texts[i] if pairs is None else f"{texts[i]} [SEP] {pairs[i]}"),
                        label=name(labels[i]), predicted=name(predictions[i]) if predictions else "")
            for i in picked]
