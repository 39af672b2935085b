"""What every benchmark shares: the figure line, medians, the environment, SST-2."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "studies" / "demo.yaml"
SST2 = Path(os.environ.get("WORKBENCH_SST2", ROOT.parent / "shared" / "data" / "sst2"))
QUIET = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


@dataclass(frozen=True)
class Figure:
    """One benchmark figure: printed as one JSON line; `note` says what it compares or why it is missing."""

    name: str
    value: float | None
    target: str | None  # e.g. "<= 1.05", ">= 5"
    unit: str
    note: str = ""

    def line(self) -> str:
        d = asdict(self)
        if d["value"] is not None:
            d["value"] = round(d["value"], 4)
        return json.dumps(d)

    @property
    def met(self) -> bool | None:
        if self.value is None or not self.target:
            return None
        op, bound = self.target.split()
        return self.value <= float(bound) if op == "<=" else self.value >= float(bound)


def median(values) -> float:
    return statistics.median(values)


def env(**extra: str) -> dict[str, str]:
    """The environment of a benchmark's child process: our code first, quiet libraries, offline."""
    return {**os.environ, **QUIET, "PYTHONPATH": str(ROOT), **extra}


def quiet() -> None:
    """Libraries' progress and info lines off, in this process (a spawned one too)."""
    import optuna

    os.environ.update({k: v for k, v in QUIET.items() if k not in os.environ})
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@contextmanager
def timed(into: dict, key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        into[key] = into.get(key, 0.0) + time.perf_counter() - start


def pool(workers: int = 2):
    """Processes for studies run side by side (spawned: no torch state forked); each sets its own threads."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


def sst2_missing() -> str | None:
    """None when SST-2 is at hand, else the message a skipped figure carries."""
    if (SST2 / "train.tsv").is_file() and (SST2 / "dev.tsv").is_file():
        return None
    return f"skipped: SST-2 not found at {SST2} (set WORKBENCH_SST2 to its folder with train.tsv and dev.tsv)"


def sst2_subset(folder: Path, rows: int, dev_rows: int) -> tuple[Path, Path]:
    """train.tsv (`rows` sampled, seeded) and dev.tsv (its first `dev_rows`) of SST-2, written into `folder`."""
    from workbench.core.tables import read_table, write_table

    train, dev = folder / "train.tsv", folder / "dev.tsv"
    write_table(read_table(SST2 / "train.tsv", "sst2 train").sample(n=rows, random_state=0), train, "train")
    write_table(read_table(SST2 / "dev.tsv", "sst2 dev").head(dev_rows), dev, "dev")
    return train, dev


def sst2_texts(n: int, split: str = "train") -> tuple[list[str], list[int]]:
    """The first `n` rows of an SST-2 split: texts and labels."""
    from workbench.core.tables import read_table

    frame = read_table(SST2 / f"{split}.tsv", f"sst2 {split}").head(n)
    return [str(t) for t in frame["sentence"]], [int(x) for x in frame["label"]]


def run_sst2_figures(figures: Callable[[bool], list[Figure]], doc: str) -> None:
    """`python benchmarks/NAME.py [--quick]` for a benchmark on SST-2: its figures as JSON lines, or why not."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if sst2_missing():
        print(sst2_missing())
        return
    for figure in figures(args.quick):
        print(figure.line())
