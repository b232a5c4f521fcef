"""A `cardgen` launcher for tests that kill or interrupt real runs at a known point: it adds one Trainer callback
that sleeps ``PACE_STEP_SLEEP`` seconds after each step and appends "<checkpoint folder> <global step>" to the
file ``PACE_SAVED`` at each saved checkpoint. The sleep changes no number."""

from __future__ import annotations

import os
from pathlib import Path

LAUNCHER = '''
import os, sys, time

import cardgen.train as train_mod

_callbacks = train_mod._callbacks


def paced(progress, stop, patience):
    from transformers import TrainerCallback

    class Pace(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            time.sleep(float(os.environ.get("PACE_STEP_SLEEP", "0")))

        def on_save(self, args, state, control, **kw):
            with open(os.environ["PACE_SAVED"], "a") as fh:
                fh.write(f"{args.output_dir} {state.global_step}\\n")

    return _callbacks(progress, stop, patience) + [Pace()]


train_mod._callbacks = paced
from cardgen.cli import main

sys.argv = ["cardgen", *sys.argv[1:]]
main()
'''


def paced_env(saved: Path, sleep: float) -> dict[str, str]:
    """The launcher's environment: no debug tracebacks, no Hub token, one thread, unbuffered output."""
    env = {k: v for k, v in os.environ.items() if k not in ("CARDGEN_DEBUG", "HF_TOKEN")}
    env.update(PACE_SAVED=str(saved), PACE_STEP_SLEEP=str(sleep), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return env


def saved_steps(saved: Path) -> list[int]:
    """The global steps of the checkpoints saved so far, in order."""
    return [int(line.rsplit(maxsplit=1)[-1]) for line in saved.read_text().splitlines() if line.strip()] \
        if saved.exists() else []
