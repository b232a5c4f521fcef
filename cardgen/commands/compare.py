"""`cardgen compare BASE FT`: both checkpoints on the same examples, with intervals and paired tests."""

from __future__ import annotations

from pathlib import Path

import click

from cardgen.commands.common import handle_errors, quiet_libraries
from cardgen.config.gate import RequireRule


@click.command()
@click.argument("base")
@click.argument("fine_tuned", metavar="FT")
@click.option("--data", required=True, metavar="FILE_OR_DATASET",
              help="Evaluation data: a csv/tsv/json/jsonl/parquet file, or a Hub dataset (or saved dataset dir).")
@click.option("--task", default="text-classification", show_default=True,
              help="The task of both models: text-classification, causal-lm, masked-lm, question-answering or "
                   "seq2seq.")
@click.option("--split", default="test", show_default=True, help="The split to evaluate on.")
@click.option("--text-column", default="text", show_default=True, help="Column with the input text.")
@click.option("--label-column", default="label", show_default=True, help="Column with the gold label.")
@click.option("--label-names", metavar="A,B,...", help="Class names in the model's label-id order.")
@click.option("--max-length", type=int, help="Truncation length for both (default: FT's run.json, else 128).")
@click.option("--train", "train_file", metavar="FILE",
              help="Training examples for the linear probe, needed when BASE has no trained head for the labels.")
@click.option("--dataset-config", metavar="NAME", help="Config name of a Hub dataset.")
@click.option("--batch-size", type=int, help="Examples per forward pass (default: FT's run.json, else 32).")
@click.option("--bootstrap", type=int, default=1000, show_default=True, help="Bootstrap resamples for the intervals.")
@click.option("--permutations", type=int, default=10000, show_default=True,
              help="Permutations behind each permutation p-value (the smallest p-value is 1 / (1 + N)).")
@click.option("--confidence", type=float, default=0.95, show_default=True, help="Coverage of the intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of resampling, permutations and probe.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Write the comparison (with per-example predictions of both models) as JSON to this file; "
              "`--json -` prints it on stdout instead of the tables.")
@click.option("--markdown", "markdown_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the card section 'Comparison with the base model' to this file.")
@click.option("--require", "require", multiple=True, metavar="METRIC:min_delta=X|METRIC:max_worse=X",
              help="A ship-gate rule (repeatable): superiority (the change's interval must start above X) or "
                   "non-inferiority (at worst X worse; X may be a percentage of the base). Exit 3 when one fails.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@handle_errors
def compare(base: str, fine_tuned: str, data: str, task: str, split: str, text_column: str, label_column: str,
            label_names: str | None, max_length: int | None, train_file: str | None, dataset_config: str | None,
            batch_size: int | None, bootstrap: int, permutations: int, confidence: float, seed: int,
            json_out: Path | None, markdown_out: Path | None, require: tuple[str, ...], quiet: bool) -> None:
    """Evaluate BASE and FT on exactly the same examples and compare them: each metric with its confidence
    interval, the delta with its own interval, and a paired significance test.

    Text classification: when BASE has no trained head for the labels (an encoder), the base is a linear probe
    on its frozen features, fitted on --train; accuracy gets an exact McNemar test. Causal LM, masked LM and QA
    (--task): both models are evaluated by the task on the same documents (windows, masks and QA settings from
    FT's run.json when FT is a `cardgen run` output) with intervals and permutation tests over documents.
    Seq2seq and instruction-tuned causal LMs: both generate for the same prompts with FT's recorded
    GenerationConfig; BLEU, chrF, ROUGE and exact match with paired intervals and tests over sentences.
    """
    import json

    from rich.markup import escape

    from cardgen.card.comparison import table_rows
    from cardgen.card.format import display_model, format_interval
    from cardgen.card.render import render_markdown
    from cardgen.commands.verdict import exit_on_verdict
    from cardgen.compare.checkpoints import compare as compare_models
    from cardgen.console import RichProgress, print_table, print_text
    from cardgen.experiments.gate import judge
    from cardgen.files import atomic_write_text
    from cardgen.record import to_dict

    names = [n.strip() for n in label_names.split(",") if n.strip()] if label_names else None
    rules = _rules(require, task)  # checked before anything is loaded
    to_stdout = json_out is not None and str(json_out) == "-"
    quiet_libraries()
    result = compare_models(base, fine_tuned, data, task=task, split=split, text_column=text_column,
                            label_column=label_column, label_names=names, max_length=max_length, train=train_file,
                            dataset_config=dataset_config, batch_size=batch_size, bootstrap_samples=bootstrap,
                            confidence=confidence, seed=seed, progress=RichProgress(quiet=quiet or to_stdout),
                            permutations=permutations)
    if to_stdout:
        from cardgen.console import print_json

        if markdown_out is not None:
            atomic_write_text(markdown_out, render_markdown(result))
        print_json(to_dict(result))
        return
    how = {"linear-probe": "linear probe on frozen features", "zero-shot": "zero-shot"}.get(
        result.method, "evaluated as it is")
    print_text(f"Base {display_model(result.base_model)} ({how}) vs fine-tuned {display_model(fine_tuned)}: "
               f"{result.num_examples} {result.split} {'examples' if result.probe or result.per_class else 'documents'}"
               f", max length {result.max_length}")
    for warning in result.warnings:
        print_text(f"Warning: {warning}")
    ci = f"{result.confidence * 100:g}% CI"
    print_table(f"Base vs fine-tuned ({ci}, {result.bootstrap_samples:,} bootstrap resamples, "
                f"{result.permutations:,} permutations, seed {result.seed})",
                ["Metric", f"base [{ci}]", f"fine-tuned [{ci}]", f"delta [{ci}]", "p-value", "test"],
                [tuple(escape(cell) for cell in row) for row in table_rows(result)])
    if result.task == "text-classification":
        print_table("Per class", ["Class", "Metric", f"base [{ci}]", f"fine-tuned [{ci}]", f"delta [{ci}]"],
                    [(escape(r.label or ""), r.name, format_interval(r.base), format_interval(r.fine_tuned),
                      format_interval(r.delta, signed=True)) for r in result.per_class])
        print_text(f"Flips: {result.wrong_to_right} wrong -> right, {result.right_to_wrong} right -> wrong")
    verdict = judge(rules, {result.split: result}, result.split) if rules else None
    if json_out is not None:
        payload = to_dict(result)
        if verdict is not None:
            payload["verdict"] = to_dict(verdict)
        atomic_write_text(json_out, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        print_text(f"Wrote {json_out}")
    if markdown_out is not None:
        atomic_write_text(markdown_out, render_markdown(result))
        print_text(f"Wrote {markdown_out}")
    exit_on_verdict(verdict)  # exit 3 when a --require rule fails


def _rules(require: tuple[str, ...], task: str) -> list[RequireRule]:
    """The --require rules, each checked against the metrics the task's comparison has intervals for."""
    from cardgen.config import TASK_ALIASES
    from cardgen.config.gate import GATE_METRICS, parse_rule
    from cardgen.errors import ConfigError

    rules = [parse_rule(text) for text in require]
    name = TASK_ALIASES.get(task, task)
    metrics = GATE_METRICS.get(name)
    for text, rule in zip(require, rules, strict=True):
        if metrics is not None and rule.metric not in metrics:
            raise ConfigError(f"--require {text!r}: {rule.metric!r} is not a metric of {name}; the comparison has "
                              f"intervals for {', '.join(metrics)}", "see `cardgen compare --help`")
    return rules
