"""`cardgen run`: fine-tune (or load), evaluate, compare, benchmark and write the card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cardgen.commands.common import handle_errors, quiet_libraries


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (default: output.dir in the config).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set training.learning_rate=3e-5 (repeatable).")
@click.option("--no-train", is_flag=True, help="Only load, evaluate and document the checkpoint.")
@click.option("--seeds", "seeds_text", metavar="N", help="Train N times, with seeds training.seed, +1, ...; the card "
              "shows each seed and the spread, and the seed best on validation is kept (sets training.seeds).")
@click.option("--overwrite", is_flag=True, help="Replace the results in a non-empty output directory.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--overwrite-card", is_flag=True,
              help="Replace a README.md in the output directory that cardgen did not write (no cardgen sections).")
@click.option("--allow-pickle", is_flag=True,
              help="Load a checkpoint that has only pickle weights (pytorch_model.bin): only from a source you trust.")
@click.option("--push-to", metavar="NS/NAME", help="Publish the card to this Hub repo when the run ends "
              "(repo id and token are checked before the run starts).")
@click.option("--push-model", is_flag=True, help="With --push-to: also upload the model (safetensors, config, "
              "tokenizer) in the same commit.")
@click.option("--token", metavar="TOKEN", help="With --push-to: the Hub token (default: HF_TOKEN or the "
              "huggingface_hub login).")
@click.option("--merge", is_flag=True, help="With a LoRA adapter (peft: section): also write the merged full weights "
              "into merged/ (peft.merge: true).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout (for CI).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@handle_errors
def run(config: Path, output: Path | None, overrides: tuple[str, ...], no_train: bool, seeds_text: str | None,
        overwrite: bool,
        resume: bool, overwrite_card: bool, allow_pickle: bool, push_to: str | None, push_model: bool,
        token: str | None, merge: bool, as_json: bool,
        quiet: bool) -> None:
    """Fine-tune (or only load) a checkpoint, evaluate it, compare it with its base model, benchmark both,
    and write run.json, config.yaml and README.md (the model card) into the output directory.

    CONFIG is a YAML file; see examples/ and the config reference in README.md.
    """
    from cardgen.config import load_config
    from cardgen.console import RichProgress, print_json, print_text
    from cardgen.errors import ConfigError
    from cardgen.pipeline import run as run_pipeline
    from cardgen.pipeline import summary

    extra = list(overrides)
    if output is not None:
        extra.append(f"output.dir={output}")
    if no_train:
        extra.append("training=null")
    if overwrite:
        extra.append("output.overwrite=true")
    if overwrite_card:
        extra.append("output.overwrite_card=true")
    if allow_pickle:
        extra.append("model.allow_pickle=true")
    cfg = load_config(config, extra)
    if seeds_text is not None:
        cfg = load_config(config, [*extra, _seeds_override(cfg, seeds_text)])
    if merge:
        if cfg.peft is None:
            raise ConfigError("--merge merges a LoRA adapter into its base, but this run trains none (no peft: "
                              "section)", "add a peft: section to the config, or drop --merge")
        import dataclasses

        cfg = dataclasses.replace(cfg, peft=dataclasses.replace(cfg.peft, merge=True))
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
    quiet_libraries()
    from cardgen.distributed import is_main_process

    main_process = is_main_process()  # under torchrun/accelerate only rank 0 reports, writes and pushes
    progress = RichProgress(quiet=quiet or as_json or not main_process)
    result = run_pipeline(cfg, progress=progress, resume=resume)
    if not main_process:
        return
    verdict = result.record.verdict
    if push_to and verdict is not None and not verdict.passed:  # the ship gate failed: nothing ships
        from cardgen.console import print_warning

        print_warning(f"not pushed to {push_to}: a compare.require rule failed (see the Verdict); to publish it "
                      f"anyway: cardgen push {result.output_dir} --repo-id {push_to}")
    elif push_to:
        _push_after_run(result.output_dir, push_to, push_model, token, progress)
    if as_json:
        out = summary(result)
        seeds = result.record.experiments.seeds if result.record.experiments else None
        if seeds is not None:
            out["seeds"] = {"kept_seed": seeds.kept_seed, "runs": [
                {"seed": r.seed, "validation": r.validation_metric, "test_metrics": r.test_metrics} for r in seeds.runs],
                "test": {k: {"mean": v.mean, "std": v.std, "low": v.low, "high": v.high} for k, v in seeds.test.items()}}
        print_json(out)
    else:
        print_text(f"Wrote {result.output_dir / 'README.md'} and {result.output_dir / 'run.json'}")
    from cardgen.commands.verdict import exit_on_verdict

    exit_on_verdict(result.record.verdict, quiet=as_json)  # exit 3 when a compare.require rule fails


def _seeds_override(cfg: Any, text: str) -> str:
    """``--seeds N`` as the override ``training.seeds=[seed, seed + 1, ...]``."""
    from cardgen.commands.common import parse_number
    from cardgen.errors import ConfigError

    if cfg.training is None:
        raise ConfigError("--seeds needs training, but this run has none (--no-train or training: null)",
                          "drop --seeds, or drop --no-train")
    n = int(parse_number(text, "--seeds", integer=True, minimum=2, command="run"))
    return f"training.seeds=[{', '.join(str(cfg.training.seed + i) for i in range(n))}]"


def _push_after_run(output_dir: Path, repo_id: str, with_model: bool, token: str | None, progress: Any) -> None:
    """The push at the end of `run --push-to`: when it fails, the error says where the finished run is and
    gives the exact `cardgen push` command that publishes it (the token itself is never repeated)."""
    import shlex

    from cardgen.errors import HubError
    from cardgen.hub.push import push

    try:
        push(output_dir, repo_id=repo_id, token=token, with_model=with_model, progress=progress)
    except HubError as exc:
        command = " ".join(["cardgen push", shlex.quote(str(output_dir)), "--repo-id", shlex.quote(repo_id),
                            *(["--with-model"] if with_model else []), *(["--token", "TOKEN"] if token else [])])
        exc.message = f"the run finished and is saved in {output_dir}, but the push failed: {exc.message}"
        exc.hint = f"{exc.hint}; then publish the saved run with `{command}`"
        exc.args = (exc.message,)
        raise
