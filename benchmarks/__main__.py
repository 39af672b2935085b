"""Every benchmark figure: `python -m benchmarks [--quick] [--only NAME ...] [--json FILE]`.

Each figure is printed as one JSON line `{"name", "value", "target", "unit", "note"}` as soon
as it is measured, then a table of all of them. Progress goes to stderr. `--quick` uses
smaller studies and fewer repeats (under 5 minutes on 2 idle cores); ratios are measured
side by side in one run, so they hold on a loaded machine where absolute times do not.
GPU figures come from `benchmarks/gpu.py` (run where a GPU is; see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback

from benchmarks import data_pipeline, first_trial, pruning, trial_overhead, warm_start, workers
from benchmarks.common import Figure, env

BENCHMARKS = {  # cheapest first: a run cut short still has the quick figures
    "data_pipeline": data_pipeline.figures,
    "trial_overhead": trial_overhead.figures,
    "time_to_first_trial": first_trial.figures,
    "warm_start_trials_ratio": warm_start.figures,
    "pruning_compute": pruning.figures,
    "vs_hf_hpsearch": workers.figures,
}


def first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else ""


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "target", "met", "unit")]
    for f in figures:
        met = {True: "yes", False: "NO", None: "-"}[f.met]
        rows.append((f.name, "n/a" if f.value is None else f"{f.value:.3g}", f.target or "-", met, f.unit))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {f.name}: {f.note}" for f in figures if f.note]
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small studies, fewer repeats")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run these benchmarks only")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE (a JSON list)")
    parser.add_argument("--child", choices=sorted(BENCHMARKS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import warnings

    warnings.filterwarnings("ignore")
    figures: list[Figure] = []
    failed = 0
    start = time.monotonic()
    if (
        args.child
    ):  # one benchmark in its own process: no MLflow store cache, frozen heap or thread setting carries over
        try:
            for figure in BENCHMARKS[args.child](args.quick, progress):
                print(figure.line(), flush=True)
        except Exception as e:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            print(
                Figure(args.child, None, None, "", f"failed: {e.__class__.__name__}: {first_line(e)}").line(),
                flush=True,
            )
            return 1
        return 0
    for name in args.only or BENCHMARKS:
        progress(f"{name} ({time.monotonic() - start:.0f} s)")
        child = [sys.executable, "-m", "benchmarks", "--child", name] + (["--quick"] if args.quick else [])
        done = subprocess.run(child, stdout=subprocess.PIPE, text=True, env=env())
        new = [Figure(**json.loads(line)) for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0:
            failed += 1
            if not new:
                new = [Figure(name, None, None, "", f"failed: exit code {done.returncode}")]
        for figure in new:
            print(figure.line(), flush=True)
        figures += new
    print(
        f"\n{len(figures)} figures in {time.monotonic() - start:.0f} s{' (quick)' if args.quick else ''}; "
        "ratios side by side in one run"
    )
    print(table(figures))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([json.loads(fig.line()) for fig in figures], f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
