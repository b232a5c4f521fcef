"""What `cardgen run` and `cardgen check` share: their options, the run's config from CONFIG or from
--model/--data (with errors in the flags' terms), and the plan's printout."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from cardgen.commands.common import quiet_libraries


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `cardgen run` that shape the run; `cardgen check` takes the same ones."""
    options = [
        click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--model", metavar="ID_OR_PATH", help="Start without a config: the checkpoint (Hub id, "
                     "local directory or .gguf file); needs --data. Task and columns are inferred."),
        click.option("--data", metavar="FILE_OR_DATASET", help="Start without a config: a data file (its "
                     "validation/test siblings are found beside a train file), a folder of split files, a saved "
                     "DatasetDict folder or a Hub dataset id; needs --model."),
        click.option("--task", help="With --model/--data: the task, when it cannot be inferred "
                     "(text-classification, causal-lm, masked-lm, question-answering)."),
        click.option("--text-column", metavar="NAME", help="With --model/--data: the column of input text."),
        click.option("--text-pair-column", metavar="NAME", help="With --model/--data: the second text of "
                     "sentence pairs."),
        click.option("--label-column", metavar="NAME", help="With --model/--data: the column of labels."),
        click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
                     help="Output directory (default: output.dir in the config)."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a config key, e.g. --set training.learning_rate=3e-5 (repeatable)."),
        click.option("--no-train", is_flag=True, help="Only load, evaluate and document the checkpoint."),
        click.option("--seeds", "seeds_text", metavar="N", help="Train N times, with seeds training.seed, +1, ...; "
                     "the card shows each seed and the spread, and the seed best on validation is kept (sets "
                     "training.seeds)."),
        click.option("--merge", is_flag=True, help="With a LoRA adapter (peft: section): also write the merged full "
                     "weights into merged/ (peft.merge: true)."),
        click.option("--overwrite", is_flag=True, help="Replace the results in a non-empty output directory."),
        click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint."),
        click.option("--overwrite-card", is_flag=True, help="Replace a README.md in the output directory that "
                     "cardgen did not write (no cardgen sections)."),
        click.option("--allow-pickle", is_flag=True, help="Load a checkpoint that has only pickle weights "
                     "(pytorch_model.bin): only from a source you trust."),
        click.option("--push-to", metavar="NS/NAME", help="Publish the card to this Hub repo when the run ends "
                     "(repo id and token are checked before the run starts)."),
        click.option("--push-model", is_flag=True, help="With --push-to: also upload the model (safetensors, "
                     "config, tokenizer) in the same commit."),
        click.option("--token", metavar="TOKEN", help="With --push-to: the Hub token (default: HF_TOKEN or the "
                     "huggingface_hub login)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


INFER_FLAGS = ("task", "text_column", "text_pair_column", "label_column")
# Config keys as the --model/--data flags name them, in errors raised deep down (data, models, tasks).
FLAG_TERMS = {"model.name_or_path": "--model", "data.train": "--data", "data.dataset": "--data",
              "data.text_column": "--text-column", "data.text_pair_column": "--text-pair-column",
              "data.label_column": "--label-column", "output.dir": "--output"}


def flag_terms(command: str) -> Any:
    """How `cardgen run --model/--data` and `cardgen init` restate errors that name config keys."""
    from cardgen.errors import CommandTerms, DataError, ModelError

    return CommandTerms(command, FLAG_TERMS, {
        ModelError: "check --model: a Hub id, a checkpoint directory (config.json, weights, tokenizer) or a .gguf file",
        DataError: "check --data and the data's columns (--text-column, --label-column)"})


@contextlib.contextmanager
def config_from_options(config: Path | None, options: dict[str, Any], progress: Any) -> Iterator[tuple[Any, str]]:
    """The run's config from CONFIG or from --model/--data, with run's flags applied and checked: yields
    (config, what it came from). Inside the block, errors of a --model/--data run name those flags."""
    from cardgen.config import load_config
    from cardgen.errors import CardgenError, ConfigError

    model, data = options.get("model"), options.get("data")
    flags = bool(model or data)
    if config is not None and flags:
        raise ConfigError("give a CONFIG file or --model and --data, not both",
                          "drop CONFIG to infer the settings, or put the model and data into the config")
    if config is None and not flags:  # shown like Click's own usage errors, with the usage line as the hint
        raise click.UsageError("Missing argument 'CONFIG' (or --model and --data to start without a config)")
    if flags and not (model and data):
        missing = "--data" if model else "--model"
        raise ConfigError(f"{'--model' if model else '--data'} needs {missing} too",
                          f"add {missing}, or give a CONFIG file")
    given = [name for name in INFER_FLAGS if options.get(name)]
    if given and not flags:
        key = "task" if given[0] == "task" else f"data.{given[0]}"
        raise ConfigError(f"--{given[0].replace('_', '-')} only applies with --model and --data",
                          f"set {key} in the config, or pass --set {key}={options[given[0]]}")
    terms = flag_terms("run")
    raw: Any = None  # the inferred config of a --model/--data run
    try:
        if flags:
            from cardgen.infer import infer_run

            inference = infer_run(str(model), str(data), task=options.get("task"),
                                  output=str(options["output"]) if options.get("output") else None,
                                  text_column=options.get("text_column"),
                                  text_pair_column=options.get("text_pair_column"),
                                  label_column=options.get("label_column"))
            for note in inference.notes:
                progress.note(f"inferred {note}")
            raw = inference.raw

        def load(extra: list[str]) -> Any:
            return load_config(data=raw, overrides=extra) if flags else load_config(config, extra)

        extra = _overrides(options)
        cfg = load(extra)
        if options.get("seeds_text") is not None:
            cfg = load([*extra, _seeds_override(cfg, options["seeds_text"])])
        if options.get("merge"):
            cfg = _with_merge(cfg)
        _check_push_options(cfg, options)
        yield cfg, "--model/--data" if flags else str(config)
    except CardgenError as exc:
        if flags:
            terms.restate(exc)  # in place: the message and hint name --model, --data, --text-column ...
        raise


def _overrides(options: dict[str, Any]) -> list[str]:
    extra = list(options.get("overrides") or ())
    if options.get("output") is not None:
        extra.append(f"output.dir={options['output']}")
    for flag, setting in (("no_train", "training=null"), ("overwrite", "output.overwrite=true"),
                          ("overwrite_card", "output.overwrite_card=true"),
                          ("allow_pickle", "model.allow_pickle=true")):
        if options.get(flag):
            extra.append(setting)
    return extra


def _seeds_override(cfg: Any, text: str) -> str:
    """``--seeds N`` as the override ``training.seeds=[seed, seed + 1, ...]``."""
    from cardgen.commands.common import parse_number
    from cardgen.errors import ConfigError

    if cfg.training is None:
        raise ConfigError("--seeds needs training, but this run has none (--no-train or training: null)",
                          "drop --seeds, or drop --no-train")
    n = int(parse_number(text, "--seeds", integer=True, minimum=2, command="run"))
    return f"training.seeds=[{', '.join(str(cfg.training.seed + i) for i in range(n))}]"


def _with_merge(cfg: Any) -> Any:
    """``--merge``: the config with ``peft.merge: true``."""
    import dataclasses

    from cardgen.errors import ConfigError

    if cfg.peft is None:
        raise ConfigError("--merge merges a LoRA adapter into its base, but this run trains none (no peft: "
                          "section)", "add a peft: section to the config, or drop --merge")
    return dataclasses.replace(cfg, peft=dataclasses.replace(cfg.peft, merge=True))


def _check_push_options(cfg: Any, options: dict[str, Any]) -> None:
    from cardgen.errors import ConfigError

    push_to, push_model, token = options.get("push_to"), options.get("push_model"), options.get("token")
    if push_model and not push_to:
        raise ConfigError("--push-model needs --push-to NS/NAME", "add --push-to, or drop --push-model")
    if push_model and not cfg.output.save_model:
        raise ConfigError("--push-model needs the model saved, but output.save_model is false",
                          "drop --set output.save_model=false, or drop --push-model")
    if token and not push_to:
        raise ConfigError("--token needs --push-to NS/NAME", "add --push-to, or drop --token")
    if push_to:
        from cardgen.hub.push import check_push_target

        check_push_target(push_to, token)  # fail now, not after hours of training


def show_plan(config: Path | None, options: dict[str, Any], *, as_json: bool, quiet: bool,
              estimate: bool = True) -> None:
    """`cardgen check` and `cardgen run --dry-run`: check everything a run would, print its plan."""
    from cardgen.console import RichProgress, print_json
    from cardgen.pipeline import check
    from cardgen.record import to_dict

    progress = RichProgress(quiet=quiet or as_json)
    with config_from_options(config, options, progress) as (cfg, label):
        quiet_libraries()
        plan = check(cfg, progress, options.get("resume", False), config_label=label,
                     push_to=options.get("push_to"), estimate=estimate)
    if as_json:
        print_json(to_dict(plan))
    else:
        _print_plan(plan)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _short(source: str) -> str:
    from cardgen.card.format import display_model

    head, sep, tail = source.partition(" (")
    return display_model(head) + sep + tail


def _print_plan(plan: Any) -> None:
    from cardgen.card.format import display_model
    from cardgen.console import print_plain

    lines = [f"Plan for {plan.config}: {plan.task}, {display_model(plan.model)} ({plan.architecture}, "
             f"{plan.num_parameters / 1e6:.1f}M parameters), inputs cut at {plan.max_length} tokens"]
    lines += [f"  inferred {note}" for note in plan.inferred]
    lines.append("Splits:")
    for s in plan.splits:
        balance = ", ".join(f"{k} {v / max(1, s.num_examples):.0%}" for k, v in s.label_distribution.items())
        truncated = f", {s.num_truncated} truncated" if s.num_truncated else ""
        lines.append(f"  {s.name:<10} {s.num_examples:>9,} examples{f' ({balance})' if balance else ''}{truncated}"
                     f"  from {_short(s.source)}")
    if plan.total_steps is not None:
        lines.append(f"Training: {plan.num_epochs:g} epoch(s) x {plan.steps_per_epoch:,} steps = {plan.total_steps:,} "
                     f"optimizer steps of {plan.total_train_batch_size} examples")
        e = plan.estimate
        if e is not None:
            per_epoch = f"; validation about {_duration(e.eval_seconds_per_epoch)} per epoch" \
                if e.eval_seconds_per_epoch is not None else ""
            lines.append(f"Estimated training time: about {_duration(e.train_seconds)} ({e.seconds_per_step:.3g} s "
                         f"per step over {e.timed_steps} timed steps on {e.device}){per_epoch}")
        if plan.trackers:
            lines.append(f"Trackers: {', '.join(plan.trackers)}")
    else:
        lines.append("Training: none (the checkpoint is evaluated and documented as it is)")
    lines.append(f"Stages: {' -> '.join(plan.stages)}")
    lines.append(f"Card: {display_model(plan.card)}" + (f", pushed to {plan.push_to}" if plan.push_to else ""))
    lines += [f"Warning: {w}" for w in plan.warnings]
    lines.append("Checked; nothing was written.")
    print_plain("\n".join(lines))
