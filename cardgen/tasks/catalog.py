"""The task vocabulary in one place: cardgen's task names and aliases (defined by the config, which checks
them), Hub pipeline tags, model-index task names, the metrics that go into model-index, and the model classes a
task is recognised by."""

from __future__ import annotations

from cardgen.config import TASK_ALIASES, TASKS

__all__ = ["CARD_METRICS", "GENERATION_METRICS", "PIPELINE_TAGS", "PIPELINE_TAG_NAMES", "TASKS", "TASK_ALIASES",
           "TASK_BY_CLASS", "TASK_NAMES"]

TASK_NAMES = {
    "text-classification": "Text Classification",
    "masked-lm": "Fill-Mask",
    "causal-lm": "Text Generation",
    "question-answering": "Question Answering",
    "seq2seq": "Text2Text Generation",
}


PIPELINE_TAGS = {
    "text-classification": "text-classification",
    "masked-lm": "fill-mask",
    "causal-lm": "text-generation",
    "question-answering": "question-answering",
    "seq2seq": "text2text-generation",
}

# Hub pipeline tags -> model-index task names, for tasks whose tag depends on the config (seq2seq's kind).
PIPELINE_TAG_NAMES = {"translation": "Translation", "summarization": "Summarization",
                      "text2text-generation": "Text2Text Generation", "text-generation": "Text Generation"}

# Generation metrics, reported by the seq2seq task and by the causal-LM task on instruction data.
GENERATION_METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match")


# The metrics that go into model-index, in order, per task.
CARD_METRICS = {
    "text-classification": ("accuracy", "f1_macro", "precision_macro", "recall_macro", "f1_positive"),
    "masked-lm": ("perplexity",),
    "causal-lm": ("perplexity", "bits_per_byte", *GENERATION_METRICS),  # generation metrics on instruction data
    "question-answering": ("exact_match", "f1"),
    "seq2seq": GENERATION_METRICS,
}


TASK_BY_CLASS = (  # model class name fragment -> cardgen task
    ("SequenceClassification", "text-classification"),
    ("QuestionAnswering", "question-answering"),
    ("MaskedLM", "masked-lm"),
    ("CausalLM", "causal-lm"),
    ("Seq2SeqLM", "seq2seq"),
    ("ConditionalGeneration", "seq2seq"),
    ("EncoderDecoderModel", "seq2seq"),
)
