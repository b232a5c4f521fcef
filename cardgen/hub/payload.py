"""What a push uploads: the file list, the public run.json (no local paths) and the card merged with the Hub's."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from cardgen.card.format import shorten_path
from cardgen.card.markers import has_markers, join_front_matter, merge_generated, split_front_matter
from cardgen.errors import CardgenError, HubError
from cardgen.trackers import TRACKER_DIR

CARD_FILES = ("README.md", "run.json")


IMAGE_PATTERNS = ("*.png", "*.svg")


MODEL_PATTERNS = (
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "adapter_config.json",  # a LoRA adapter (its weights: adapter_model.safetensors)
)


def collect_files(output_dir: Path, with_model: bool) -> dict[str, Path]:
    if not output_dir.is_dir():
        raise HubError(f"run directory {output_dir} not found", "pass the output directory of a cardgen run")
    if not (output_dir / "README.md").is_file():
        raise HubError(f"{output_dir / 'README.md'} not found: there is no card to push",
                       f"render it with `cardgen card {output_dir}`")
    files: dict[str, Path] = {name: output_dir / name for name in CARD_FILES if (output_dir / name).is_file()}
    for path in sorted(output_dir.rglob("*")):
        rel = path.relative_to(output_dir)
        if not path.is_file() or any(p.startswith((".", "checkpoint-")) for p in rel.parts[:-1]):
            continue
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in IMAGE_PATTERNS):
            files[rel.as_posix()] = path
        elif rel.parts[0] == TRACKER_DIR and path.name.startswith("events.out.tfevents."):
            files[rel.as_posix()] = path  # the Hub shows TensorBoard event files in the repo's metrics tab
    if with_model:
        model = {p.name: p for p in sorted(output_dir.iterdir())
                 if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in MODEL_PATTERNS)}
        has_config = "config.json" in model or "adapter_config.json" in model
        if not any(name.endswith(".safetensors") for name in model) or not has_config:
            hint = ("save the model with save_pretrained() (safetensors) into the run directory, "
                    "or push without --with-model to publish only the card")
            found = ", ".join(model) or "none"
            raise HubError(f"--with-model: no *.safetensors weights and config.json at the root of {output_dir} "
                           f"(found: {found})", hint)
        files.update(model)
    return files


def public_run_json(raw: bytes, output_dir: Path) -> bytes:
    """run.json as published: local absolute paths (data files, model directory, output and checkpoint
    directories) shortened so they do not reveal the machine's directory layout or user name.

    A path inside the run directory becomes relative to it, one under the working directory relative to that,
    one under the home directory ``~/...``, one in an installed package ``site-packages/...``, any other
    ``.../parent/name`` (keys too: data fingerprints are keyed by file). Only strings naming an existing path (or one in an existing directory) are touched, so
    texts that merely start with "/" stay as they are. The local run.json keeps the full paths.
    """
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw  # not ours to fix: pushed as it is
    roots = [(output_dir.resolve(), "."), (Path.cwd().resolve(), "."), (Path.home().resolve(), "~")]

    def shorten(value: str) -> str:
        if not value.startswith("/") or "\n" in value or len(value) > 4096:
            return value
        path = Path(value)
        try:
            if not (path.exists() or path.parent.is_dir()):
                return value
            path = path.resolve()
        except (OSError, ValueError):
            return value
        if len(path.parts) < 3:  # "/" or "/tmp": nothing to hide
            return value
        return shorten_path(path, roots)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return shorten(value)
        if isinstance(value, dict):
            return {shorten(key): walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return (json.dumps(walk(record), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def public_adapter_config(raw: bytes, run_json: bytes | None) -> bytes:
    """adapter_config.json as published: ``base_model_name_or_path`` names the base's Hub id (``card.base_model``
    of the run) instead of the local directory it was trained from, so peft's AutoPeftModel finds the base for
    whoever downloads the adapter. Left as it is when the run names no Hub id."""
    try:
        config = json.loads(raw)
        record = json.loads(run_json) if run_json else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw
    base = ((record.get("config") or {}).get("card") or {}).get("base_model") if isinstance(record, dict) else None
    if not isinstance(config, dict) or not isinstance(base, str) or not base:
        return raw
    return (json.dumps({**config, "base_model_name_or_path": base}, indent=2, sort_keys=True) + "\n").encode()


def card_to_push(local_card: str, remote_card: str | None, overwrite: bool, repo_id: str) -> str:
    if overwrite or remote_card is None or remote_card == local_card:
        return local_card
    _, remote_body = split_front_matter(remote_card)
    if not has_markers(remote_body):
        raise HubError(f"the card on {repo_id} has no cardgen sections (written by hand or another tool); "
                       "pushing would replace it",
                       "pass --overwrite to replace it, or add the generated sections to it by hand")
    merged = merge_generated(remote_card, local_card)
    return _merge_eval_results(remote_card, local_card, merged)


def _merge_eval_results(remote_card: str, local_card: str, merged: str) -> str:
    """metadata_update semantics for model-index: our results win, the Hub's other results are kept."""
    from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

    old_meta, _ = split_front_matter(remote_card)
    new_meta, _ = split_front_matter(local_card)
    if not old_meta.get("model-index") or not new_meta.get("model-index"):
        return merged
    try:
        _, old_results = model_index_to_eval_results(old_meta["model-index"])
        name, new_results = model_index_to_eval_results(new_meta["model-index"])
    except (KeyError, TypeError, ValueError):
        return merged  # a malformed model-index on the Hub: ours replaces it (the lint checks ours)
    kept = [old for old in old_results
            if not any(new.is_equal_except_value(old) for new in new_results)]
    if not kept:
        return merged
    meta, body = split_front_matter(merged)
    meta["model-index"] = eval_results_to_model_index(name, [*new_results, *kept])
    return join_front_matter(meta, body)


def git_blob_id(data: bytes) -> str:
    """The id git (and the Hub) gives a file's content: sha1 of ``blob <size>\\0<content>``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


EVAL_RESULTS_DIR = ".eval_results"


def with_run_record(card: str, contents: dict[str, bytes], output_dir: Path, run_url: str) -> str:
    """What the pushed run.json adds to a push: the card's model-index results point at it (``source_url``), and
    the opt-in ``.eval_results/<task>.yaml`` entry (config ``eval_results``) is added to ``contents``."""
    from cardgen.card.metadata import eval_result_entries, eval_results_yaml, with_source_url
    from cardgen.record import load_record

    try:
        record = load_record(output_dir / "run.json")
    except CardgenError:  # a run.json cardgen did not write: pushed as it is, and the card names no source
        return card
    card = with_source_url(card, run_url)
    entries = eval_result_entries(record, run_url)
    if entries:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", entries[0].task_id).strip("-.") or "default"
        contents[f"{EVAL_RESULTS_DIR}/{name}.yaml"] = eval_results_yaml(entries).encode("utf-8")
    return card
