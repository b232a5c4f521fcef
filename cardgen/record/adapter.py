"""Records of adapters (LoRA) and of how a run fit its model into memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from cardgen.record.bench import MemoryStats


@dataclass
class AdapterRecord:
    """A LoRA adapter the run trained (or loaded): its settings as peft applied them, its size, its base."""

    method: str  # "lora"
    peft_type: str  # peft's name, e.g. "LORA"
    task_type: str | None  # peft's task type ("SEQ_CLS", "CAUSAL_LM", ...), None for a plain PeftModel
    r: int
    alpha: float
    dropout: float
    target_modules: list[str]  # as peft resolved them (its per-architecture default when none were given)
    modules_to_save: list[str]  # trained and saved in full (task head, freshly initialised modules)
    trainable_parameters: int
    total_parameters: int  # of the model with the adapter (adapter weights and saved copies included)
    base_model: str  # the base as adapter_config.json names it (a local path or a Hub id)
    source: str = "trained"  # "trained" by this run, or "loaded" from an existing adapter (path or Hub id)
    loaded_from: str | None = None  # the adapter directory or Hub id, when loaded
    target_modules_default: bool = True  # peft's default for the architecture (not set in the config)
    quantization: str | None = None  # e.g. "4-bit NF4 (bitsandbytes), compute bfloat16": QLoRA
    adapter_size_bytes: int | None = None  # adapter_model.safetensors + adapter_config.json as saved
    full_size_bytes: int | None = None  # the merged full model's weights as saved (the size without an adapter)
    merged_dir: str | None = None  # where the merged full weights were written (relative), None when not
    base_evaluation: str | None = None  # how the base was evaluated, e.g. "adapter disabled on the same model"
    base_newly_initialized: list[str] = field(default_factory=list)  # fresh in the base (the adapter trains them)
    notes: list[str] = field(default_factory=list)

    @property
    def trainable_share(self) -> float:
        """Trainable / total parameters."""
        return self.trainable_parameters / self.total_parameters if self.total_parameters else 0.0


@dataclass
class ResourcesRecord:
    """How the run fit the model into memory, and the peaks it measured."""

    device: str  # where the model ran, e.g. "cpu" or "cuda:0"
    load_dtype: str  # the weights' dtype as loaded (model.dtype), e.g. "float32"
    trainable_parameters: int  # requires_grad when training started (all of them without an adapter)
    total_parameters: int
    mixed_precision: str = "no"  # training autocast: "no", "bf16" or "fp16"
    gradient_checkpointing: bool = False
    quantization: str | None = None  # the base's weights quantized at load (QLoRA), in words
    # Peak memory of the stages that were tracked ("evaluate", "compare", ...): the compare stage with an adapter
    # evaluates the base on the same in-memory model, so its peak should stay near evaluate's.
    stage_memory: dict[str, MemoryStats] = field(default_factory=dict)
