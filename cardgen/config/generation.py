"""Config sections of the generation tasks: ``generation`` (decoding and scoring), ``seq2seq`` (the seq2seq task's
columns and lengths) and ``instruction`` (prompt/completion or chat data for the causal-LM task).

Decoding is greedy by default (``num_beams: 1``, ``do_sample: false``) so base and fine-tuned outputs are
deterministic and comparable; every setting used goes into run.json as the transformers ``GenerationConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Metrics cardgen computes itself, from per-sentence statistics it can resample (intervals, paired tests).
BUILTIN_METRICS = ("bleu", "chrf", "rouge", "exact_match")
EVALUATE_PREFIX = "evaluate:"  # any other evaluate metric: "evaluate:bertscore", "evaluate:/path/to/metric"
MAX_NEW_TOKENS = 4096


@dataclass(frozen=True)
class GenerationSection:
    """How outputs are generated (the same settings for the base and the fine-tuned model) and scored."""

    max_new_tokens: int = 64
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0  # only with do_sample
    top_p: float = 1.0  # only with do_sample
    top_k: int = 50  # only with do_sample
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0  # beam search only
    batch_size: int | None = None  # prompts per generate() call; default evaluation.batch_size
    metrics: list[str] = field(default_factory=lambda: list(BUILTIN_METRICS))
    lowercase: bool = False  # case-insensitive BLEU, chrF and exact match (e.g. for an uncased tokenizer)
    bleu_tokenize: str = "13a"  # sacreBLEU tokenizer
    chrf_word_order: int = 0  # 2 gives chrF++
    rouge_tokenizer: Literal["default", "unicode"] = "unicode"  # "default": rouge-score's ASCII-only tokenizer
    examples: int = 5  # rows each in the card's largest-gains and largest-losses tables (by sentence chrF)
    widget: int = 3  # test prompts shown as the Hub widget's examples

    def _checks(self) -> list[tuple[str, str]]:
        errors = []
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            errors.append(("max_new_tokens", f"must be in [1, {MAX_NEW_TOKENS}] (got {self.max_new_tokens})"))
        if self.num_beams < 1:
            errors.append(("num_beams", f"must be >= 1 (got {self.num_beams})"))
        if self.temperature <= 0:
            errors.append(("temperature", f"must be > 0 (got {self.temperature})"))
        if not 0 < self.top_p <= 1:
            errors.append(("top_p", f"must be in (0, 1] (got {self.top_p})"))
        for key in ("top_k", "no_repeat_ngram_size", "examples", "widget", "chrf_word_order"):
            if getattr(self, key) < 0:
                errors.append((key, f"must be >= 0 (got {getattr(self, key)})"))
        if self.repetition_penalty <= 0:
            errors.append(("repetition_penalty", f"must be > 0 (got {self.repetition_penalty})"))
        if self.batch_size is not None and self.batch_size < 1:
            errors.append(("batch_size", f"must be >= 1 (got {self.batch_size})"))
        if not self.metrics:
            errors.append(("metrics", f"must name at least one metric ({', '.join(BUILTIN_METRICS)})"))
        for i, name in enumerate(self.metrics):
            if name not in BUILTIN_METRICS and not (name.startswith(EVALUATE_PREFIX) and len(name) > 9):
                errors.append((f"metrics[{i}]", f"must be one of {', '.join(BUILTIN_METRICS)} or "
                                                f"'evaluate:NAME' (got {name!r})"))
        if len(set(self.metrics)) != len(self.metrics):
            errors.append(("metrics", "must not name a metric twice"))
        return errors


@dataclass(frozen=True)
class Seq2SeqSection:
    """The seq2seq task (translation, summarization, text2text): columns, lengths, and how the model is built."""

    source_column: str = "source"
    target_column: str = "target"
    max_source_length: int = 128  # tokens; longer sources are truncated (counted in the card)
    max_target_length: int = 128  # tokens of a training target; longer ones are truncated
    source_prefix: str = ""  # put before every source, e.g. "translate English to German: " for T5
    kind: Literal["translation", "summarization", "text2text"] = "text2text"  # the Hub pipeline_tag
    source_lang: str | None = None  # e.g. "en" (translation)
    target_lang: str | None = None  # e.g. "de"
    encoder_decoder: bool = False  # build an encoder-decoder from an encoder-only checkpoint (random cross-attention)
    decoder: str | None = None  # with encoder_decoder: the decoder's checkpoint (default: the encoder's)

    def _checks(self) -> list[tuple[str, str]]:
        errors = []
        for key in ("max_source_length", "max_target_length"):
            if getattr(self, key) < 2:
                errors.append((key, f"must be >= 2 (got {getattr(self, key)})"))
        if self.source_column == self.target_column:
            errors.append(("target_column", f"must differ from seq2seq.source_column ({self.source_column!r})"))
        if self.decoder is not None and not self.encoder_decoder:
            errors.append(("decoder", "only applies with seq2seq.encoder_decoder: true"))
        return errors


@dataclass(frozen=True)
class InstructionSection:
    """Instruction data for the causal-LM task: ``prompt``/``completion`` columns, or a ``messages`` column.

    Setting ``prompt_column`` or ``messages_column`` switches the causal-LM task from plain text to instruction
    tuning: the loss covers completion tokens only, and evaluation generates a completion for every test prompt.
    """

    prompt_column: str | None = None
    completion_column: str = "completion"
    messages_column: str | None = None  # [{"role": ..., "content": ...}, ...]; the last assistant turn is the target
    template: str = "{prompt}"  # the user's text around the prompt, e.g. "Translate to German: {prompt}"
    chat_template: bool = False  # render prompts with the tokenizer's chat template
    system: str | None = None  # a system message (chat template only)

    def _checks(self) -> list[tuple[str, str]]:
        errors = []
        if self.prompt_column and self.messages_column:
            errors.append(("messages_column", "give either instruction.prompt_column or instruction.messages_column"))
        if "{prompt}" not in self.template:
            errors.append(("template", f"must contain {{prompt}} where the prompt goes (got {self.template!r})"))
        if self.prompt_column is not None and self.prompt_column == self.completion_column:
            errors.append(("completion_column", "must differ from instruction.prompt_column"))
        if self.messages_column is not None and not self.chat_template:
            errors.append(("chat_template", "must be true with instruction.messages_column (messages are rendered "
                                            "with the tokenizer's chat template)"))
        if self.system is not None and not self.chat_template:
            errors.append(("system", "only applies with instruction.chat_template: true"))
        return errors

    @property
    def enabled(self) -> bool:
        """Whether the causal-LM task trains on instructions instead of plain text."""
        return bool(self.prompt_column or self.messages_column)
