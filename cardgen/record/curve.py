"""The training curve: what the Trainer logged every ``logging_steps`` (loss, learning rate, gradient norm)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LogPoint:
    """One training log entry of the Trainer: the mean loss over the steps since the previous entry."""

    step: int
    epoch: float
    loss: float
    learning_rate: float | None = None
    grad_norm: float | None = None
