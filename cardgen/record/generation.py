"""Records of the generation tasks (seq2seq, instruction-tuned causal LM): every generated output with the
per-sentence statistics its scores come from, and what the base-vs-fine-tuned comparison adds (examples, the
sacreBLEU-style paired bootstrap p-values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class GenerationOutputs:
    """One model's outputs on the evaluation split and the statistics behind every generation metric.

    Kept in ``EvaluationRecord.extra["generation"]``: each corpus number can be recomputed from ``outputs`` and
    ``references`` with sacreBLEU and rouge-score alone, and resampled from the per-sentence statistics.
    """

    sources: list[str]  # the inputs as the data holds them (before any template or prefix)
    prompts: list[str]  # what the model was given (prefix, template or chat template applied)
    references: list[str]
    outputs: list[str]
    bleu_stats: list[list[float]]  # sacreBLEU's per-sentence sufficient statistics
    chrf_stats: list[list[float]]
    rouge: dict[str, list[float]]  # rouge type -> per-sentence F-measure (0-1)
    exact: list[float]
    sentence_chrf: list[float]
    output_tokens: list[int]  # new tokens generated per example
    signatures: dict[str, str]  # metric key -> reproducibility signature (sacreBLEU's for bleu and chrf)
    settings: dict[str, Any]  # the metric settings (lowercase, tokenizers, chrF word order)
    generation_config: dict[str, Any]  # transformers GenerationConfig as used (non-default values)
    truncated_sources: int = 0  # inputs cut to the maximum source length


@dataclass
class GenerationExample:
    """One evaluation example with both models' outputs (texts shortened for the card)."""

    index: int
    source: str
    reference: str
    base: str
    fine_tuned: str
    base_chrf: float
    fine_tuned_chrf: float


@dataclass
class GenerationComparison:
    """What a generation comparison adds to the metric rows: the largest gains and losses by sentence chrF, and
    how many sentences got better or worse."""

    sort_metric: str = "chrf"
    gains: list[GenerationExample] = field(default_factory=list)
    losses: list[GenerationExample] = field(default_factory=list)
    better: int = 0
    worse: int = 0
    same: int = 0
    signatures: dict[str, str] = field(default_factory=dict)
    # metric key -> p-value of sacreBLEU's paired bootstrap test (Koehn 2004), from the interval's resamples
    bootstrap_p_values: dict[str, float] = field(default_factory=dict)
    generation_config: dict[str, Any] = field(default_factory=dict)
