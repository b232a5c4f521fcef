"""The ``peft:`` section: train an adapter (LoRA) on a frozen base instead of every weight.

Present (even empty, ``peft: {}``) it turns LoRA on; absent or ``peft: null`` the run fine-tunes every weight.
Applied in one place for every task (``cardgen.adapters``), right after the task loaded its model, so a new task
gets LoRA without code of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PEFT_METHODS = ("lora",)


@dataclass(frozen=True)
class AdapterConfig:
    """LoRA settings, mapped onto ``peft.LoraConfig``.

    ``target_modules`` left unset uses peft's default for the architecture (``query``/``value`` for BERT,
    ``q_proj``/``v_proj`` for Llama, ...); ``["all-linear"]`` targets every linear layer but the output head.
    ``modules_to_save`` names modules trained and saved in full; peft adds the task's head (the classifier, the
    QA span head), and cardgen every module whose weights transformers initialised fresh when loading the base
    (a missing pooler or MLM head), so a saved adapter always reproduces the model it was evaluated as.
    """

    method: Literal["lora"] = "lora"
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] | None = None
    modules_to_save: list[str] | None = None
    bias: Literal["none", "all", "lora_only"] = "none"
    merge: bool = False  # also write the merged full weights (into merged/ in the output directory)

    def _checks(self) -> list[tuple[str, str]]:
        errors = []
        if self.r < 1:
            errors.append(("r", f"must be >= 1 (got {self.r})"))
        if self.alpha <= 0:
            errors.append(("alpha", f"must be > 0 (got {self.alpha})"))
        if not 0 <= self.dropout < 1:
            errors.append(("dropout", f"must be in [0, 1) (got {self.dropout})"))
        if self.target_modules is not None and (not self.target_modules
                                                or any(not str(m).strip() for m in self.target_modules)):
            errors.append(("target_modules", "must name at least one module (or be left out for peft's default)"))
        if self.target_modules and "all-linear" in self.target_modules and len(self.target_modules) > 1:
            errors.append(("target_modules", "`all-linear` stands alone: it already targets every linear layer"))
        if self.modules_to_save is not None and any(not str(m).strip() for m in self.modules_to_save):
            errors.append(("modules_to_save", "must not contain empty names"))
        return errors
