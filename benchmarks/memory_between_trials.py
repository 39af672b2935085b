"""Resident memory after each trial of a tiny 10-trial study: is a trial's memory released?

Run from the repository root: `PYTHONPATH=$PWD python benchmarks/memory_between_trials.py`.
Prints RSS (MiB) after every trial and the ratio after trial 10 / after trial 1 (target: within 10%).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no /proc/self/status: Linux only")


def main() -> None:
    import os

    from helpers import TINY, merge

    from workbench.config.study_file import validate_study
    from workbench.study.session import RunOptions, run_session

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        spec = validate_study(merge(TINY, {"study": {"n_trials": 10}, "registry": {"model_name": None}}))
        figures: list[float] = []

        def progress(line: str) -> None:
            if line.lstrip().startswith("trial"):
                figures.append(rss_mib())
                print(f"{line.strip()[:60]:<60} rss {figures[-1]:7.1f} MiB", flush=True)

        run_session(spec, RunOptions(register=False), progress=progress)
    print(
        f"rss after trial 1: {figures[0]:.1f} MiB; after trial {len(figures)}: {figures[-1]:.1f} MiB; "
        f"ratio {figures[-1] / figures[0]:.3f}"
    )


if __name__ == "__main__":
    main()
