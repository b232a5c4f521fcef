"""The task vocabulary in one place: cardgen's task names and aliases (defined by the config, which checks
them), Hub pipeline tags, model-index task names, the metrics that go into model-index, and the model classes a
task is recognised by."""

from __future__ import annotations

from cardgen.config import TASK_ALIASES, TASKS

__all__ = ["CARD_METRICS", "PIPELINE_TAGS", "TASKS", "TASK_ALIASES", "TASK_BY_CLASS", "TASK_NAMES"]

TASK_NAMES = {
    "text-classification": "Text Classification",
    "masked-lm": "Fill-Mask",
    "causal-lm": "Text Generation",
    "question-answering": "Question Answering",
}


PIPELINE_TAGS = {
    "text-classification": "text-classification",
    "masked-lm": "fill-mask",
    "causal-lm": "text-generation",
    "question-answering": "question-answering",
}


# The metrics that go into model-index, in order, per task.
CARD_METRICS = {
    "text-classification": ("accuracy", "f1_macro", "precision_macro", "recall_macro", "f1_positive"),
    "masked-lm": ("perplexity",),
    "causal-lm": ("perplexity", "bits_per_byte"),
    "question-answering": ("exact_match", "f1"),
}


TASK_BY_CLASS = (  # model class name fragment -> cardgen task
    ("SequenceClassification", "text-classification"),
    ("QuestionAnswering", "question-answering"),
    ("MaskedLM", "masked-lm"),
    ("CausalLM", "causal-lm"),
)
