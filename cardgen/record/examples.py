"""Examples from the evaluation split that the card shows (per-label table, the Hub's ``widget:``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CardExample:
    """One evaluation example as the card shows it: its text (shortened), gold label and the model's answer.

    For question answering ``text`` is the question and ``context`` its passage; for the LM tasks ``label`` and
    ``predicted`` are empty.
    """

    index: int  # position in the evaluation split
    text: str
    label: str = ""
    predicted: str = ""
    context: str = ""
