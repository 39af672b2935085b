"""Time to first trial: seconds from `workbench study run` starting to a trial training, 1 and 4 workers.

The command runs the demo study (its data prepared and its tokenizer trained, as a user's
first run would) with one epoch and as many trials as workers, in a fresh directory (stores
created). With `--debug` each trial logs `trial N params ...` just before its Trainer is
built; the benchmark timestamps those lines as it reads them. For 4 workers it reports the
first worker's first trial and the last worker's: if workers waited on each other's start-up
in series, the last would come N start-ups after the first.

    PYTHONPATH=. python benchmarks/first_trial.py [--workers 1 4]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEMO, Figure, env, median

TRIAL_START = re.compile(r"(?:\[w(\d+)\] )?.*trial \d+ params ")


def first_trials(workers: int) -> tuple[float, float]:
    """(seconds to the first trial starting, seconds until every worker has started one)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "workbench", "--debug", "study", "run", str(DEMO), "--no-register"]
        command += ["--set", f"study.n_trials={workers}", "--set", "training.num_train_epochs=1"]
        command += ["--workers", str(workers)] if workers > 1 else []
        started: dict[str, float] = {}
        start = time.monotonic()
        proc = subprocess.Popen(
            command, cwd=tmp, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        tail = []
        for line in proc.stdout:
            tail = (tail + [line])[-20:]
            match = TRIAL_START.search(line)
            if match:
                started.setdefault(match.group(1) or "0", time.monotonic() - start)
        if proc.wait() != 0 or not started:
            raise RuntimeError(f"workbench study run --workers {workers} failed:\n{''.join(tail)}")
    return min(started.values()), max(started.values())


def figures(quick: bool, show=print) -> list[Figure]:
    repeats = 1 if quick else 3
    out = []
    for workers in (1, 4):
        firsts, lasts = [], []
        for _ in range(repeats):
            first, last = first_trials(workers)
            firsts.append(first), lasts.append(last)
            show(f"  {workers} worker(s): first trial at {first:.1f} s, every worker training at {last:.1f} s")
        name = "time_to_first_trial_s" + ("" if workers == 1 else f"_{workers}w")
        note = f"demo study, fresh stores, data prepared; median of {repeats}"
        if workers > 1:
            note += f"; all {workers} workers training at {median(lasts):.1f} s"
        out.append(Figure(name, median(firsts), None, "s", note))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    for workers in args.workers:
        first, last = first_trials(workers)
        print(f"{workers} worker(s): first trial at {first:.1f} s, every worker training at {last:.1f} s")


if __name__ == "__main__":
    main()
