"""`cardgen bench CHECKPOINT [--vs BASE]`: latency, throughput, memory, load time and size."""

from __future__ import annotations

import click

from cardgen.commands.common import handle_errors, parse_number, quiet_libraries


@click.command()
@click.argument("checkpoint")
@click.option("--vs", "base", metavar="BASE", help="Also measure this checkpoint (e.g. the base model), interleaved.")
@click.option("--batch-sizes", default="1,32", show_default=True, metavar="N,N", help="Batch sizes to measure.")
@click.option("--seq-len", default="64", show_default=True, metavar="N", help="Tokens per row (synthetic inputs).")
@click.option("--precision", default="fp32", show_default=True, metavar="fp32|bf16|fp16",
              help="Autocast precision (bf16/fp16 on GPU; bf16 on CPUs with native bf16).")
@click.option("--compile", "compile_", is_flag=True, help="Wrap the models in torch.compile (cold call included).")
@click.option("--min-iterations", default="10", show_default=True, metavar="N",
              help="Fewest timed calls per model and batch size.")
@click.option("--min-seconds", default="1.0", show_default=True, metavar="S",
              help="Fewest timed seconds per model and batch size.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole benchmark record as JSON on stdout.")
@handle_errors
def bench(checkpoint: str, base: str | None, batch_sizes: str, seq_len: str, precision: str, compile_: bool,
          min_iterations: str, min_seconds: str, as_json: bool) -> None:
    """Latency (mean, p50, p90, p99), throughput, memory, load time and size of CHECKPOINT, and of BASE with
    --vs, measured in the same process in interleaved rounds. Causal LMs and seq2seq models also get time to
    first token and decode speed.
    """
    from cardgen.bench.checkpoints import bench_checkpoints
    from cardgen.card.speed import cli_tables, describe, model_summary
    from cardgen.console import print_json, print_table, print_text
    from cardgen.record import to_dict

    quiet_libraries()
    record = bench_checkpoints(checkpoint, base, batch_sizes=batch_sizes,
                               sequence_length=int(parse_number(seq_len, "--seq-len", integer=True)),
                               precision=precision, compile=compile_,
                               min_iterations=int(parse_number(min_iterations, "--min-iterations", integer=True)),
                               min_seconds=parse_number(min_seconds, "--min-seconds", minimum=0.0))
    if as_json:
        print_json(to_dict(record))
        return
    about = describe(record)
    for model in record.models.values():
        print_text(model_summary(model))
    for title, header, rows in cli_tables(record):
        print_table(title, header, rows)
    print_text(f"{about['hardware']}; {about['precision']}; {about['versions']}; load average {about['load_average']}")
