"""The first five minutes: `cardgen init` (a commented config inferred from a model and data) and `cardgen check`
(everything a run would load and check, and its plan, without writing anything)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cardgen.commands.common import handle_errors, quiet_libraries
from cardgen.commands.runconfig import flag_terms, run_options, show_plan


@click.command()
@run_options
@click.option("--no-estimate", is_flag=True, help="Skip the timed training steps (no time estimate).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@handle_errors
def check(config: Path | None, no_estimate: bool, as_json: bool, quiet: bool, **options: Any) -> None:
    """Check a run without running it: resolve and validate the config, data, columns, labels, model, tokenizer,
    output directory, push target and template exactly as `cardgen run` would, then print the plan (split sizes,
    label balance, steps, stages, where the card goes, and the training time estimated from a few timed steps).

    Takes the same arguments as `cardgen run`, fails with the same one-line error, writes nothing. Exit 0 when
    the run would start, 2 when it would not.
    """
    show_plan(config, options, as_json=as_json, quiet=quiet, estimate=not no_estimate)


@click.command()
@click.option("--model", required=True, metavar="ID_OR_PATH", help="The checkpoint (Hub id, local directory, "
              ".gguf file or pkg:MODULE/PATH).")
@click.option("--data", required=True, metavar="FILE_OR_DATASET", help="A data file, a folder of split files, a "
              "saved DatasetDict folder or a Hub dataset id.")
@click.option("--task", help="The task, when it cannot be inferred.")
@click.option("--text-column", metavar="NAME", help="The column of input text.")
@click.option("--text-pair-column", metavar="NAME", help="The second text of sentence pairs.")
@click.option("--label-column", metavar="NAME", help="The column of labels.")
@click.option("-o", "--output", metavar="DIR", help="The run's output directory (output.dir).")
@click.option("--json", "as_json", is_flag=True, help="Print the inferred config and notes as JSON instead.")
@handle_errors
def init(model: str, data: str, task: str | None, text_column: str | None, text_pair_column: str | None,
         label_column: str | None, output: str | None, as_json: bool) -> None:
    """Write a commented config for MODEL and DATA on stdout: `cardgen init --model M --data D > config.yaml`.

    Infers what `cardgen run --model M --data D` infers (task, text and label columns, label names, splits) and
    writes it with the settings people change most; `cardgen run config.yaml` then makes the same run.
    Paths in it are absolute, so the file works wherever it is saved.
    """
    import datetime as dt
    import shlex

    from cardgen.config import load_config
    from cardgen.config.commented import commented_yaml
    from cardgen.console import print_json, print_plain
    from cardgen.errors import CardgenError
    from cardgen.infer import infer_run

    quiet_libraries()
    try:
        inference = infer_run(model, data, task=task, output=output, text_column=text_column,
                              text_pair_column=text_pair_column, label_column=label_column)
        cfg = load_config(data=inference.raw)
    except CardgenError as exc:
        raise flag_terms("init").restate(exc) from None
    if as_json:
        print_json({"config": inference.raw, "inferred": inference.notes})
        return
    words = ["cardgen", "init", "--model", model, "--data", data]
    for flag, value in (("--task", task), ("--text-column", text_column), ("--text-pair-column", text_pair_column),
                        ("--label-column", label_column), ("--output", output)):
        if value:
            words += [flag, value]
    header = [f"Written by `{shlex.join(words)}` on {dt.date.today().isoformat()}.",
              "Check it with `cardgen check config.yaml`; run it with `cardgen run config.yaml`.",
              "Every key is described in README.md (Config reference); unset keys keep their defaults."]
    print_plain(commented_yaml(cfg, inference.raw, inference.comments, header))
