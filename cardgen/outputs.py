"""What a run's output directory holds: the inputs it must not hold, and the files an earlier run wrote there
(its run.json lists them), which a new run replaces or removes and nothing else."""

from __future__ import annotations

from pathlib import Path

from cardgen.config import RunConfig
from cardgen.errors import OutputError

# The standard outputs and what save_pretrained writes for the usual models: what a run recorded before
# ``outputs`` existed is taken to have written these.
LEGACY_FILES = ("run.json", "README.md", "config.yaml", "model.safetensors", "model.safetensors.index.json",
                "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json",
                "tokenizer.model", "chat_template.jinja")


def check_inputs_outside(cfg: RunConfig, out_dir: Path) -> None:
    """Refuse an output directory that holds one of the run's inputs (data files, template, model directory):
    the run's outputs (config.json, README.md, ...) would overwrite them.

    Raises:
        OutputError: Naming the input and its config key.
    """
    out = out_dir.expanduser().resolve()
    inputs = {"data.train": cfg.data.train, "data.validation": cfg.data.validation, "data.test": cfg.data.test,
              "data.dataset": cfg.data.dataset, "card.template": cfg.card.template,
              "model.name_or_path": cfg.model.name_or_path}
    for key, value in inputs.items():
        if not value or not Path(value).expanduser().exists():
            continue  # a Hub id or a missing file (reported by its own check)
        source = Path(value).expanduser().resolve()
        if source == out or out in source.parents:
            raise OutputError(f"output directory {out_dir} holds the run's input {value} ({key}); the run's "
                              "outputs would overwrite it",
                              "choose an --output directory outside the data, model and template folders")


def previous_outputs(out_dir: Path) -> list[str]:
    """The files the run recorded in ``out_dir/run.json`` wrote there (what --overwrite replaces or removes).

    Records from before the list existed name the standard outputs and the usual model files.
    """
    import json

    try:
        data = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    names = data.get("outputs")
    if not isinstance(names, list):
        from cardgen.card.plots import PLOT_FILES

        names = [*LEGACY_FILES, *PLOT_FILES]
    # Plain names only: a hand-edited record must not make cardgen delete anything outside the directory.
    return [n for n in names if isinstance(n, str) and n and "/" not in n and "\\" not in n
            and not n.startswith(".") and n not in ("..", ".cardgen.lock")]
