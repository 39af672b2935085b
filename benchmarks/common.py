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
    """Processes for studies run side by side (spawned: no torch state forked).

    Each is told it shares the machine's cores with the others (`WORKBENCH_WORKERS`, as `study
    run --workers` does), so a study in it sizes torch's threads to its share: two 2-thread
    studies on 2 cores ran trials 5x slower."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_share_cores, initargs=(workers,)
    )


def _share_cores(workers: int) -> None:
    from workbench.core import settings

    os.environ[settings.WORKBENCH_WORKERS.name] = str(workers)


def sst2_missing() -> str | None:
    """None when SST-2 is at hand, else the message a skipped figure carries."""
    if (SST2 / "train.tsv").is_file() and (SST2 / "dev.tsv").is_file():
        return None
    return f"skipped: SST-2 not found at {SST2} (set WORKBENCH_SST2 to its folder with train.tsv and dev.tsv)"


@dataclass(frozen=True)
class DemoProblem:
    """The demo study's data, model and search space at a benchmark's size.

    At 7500 examples (4800 to train on) a trial's F1 climbs from 0.2-0.7 after its first epoch to 0.7-0.88
    after its sixth. On 1500 (half of 3750 for validation) many trials sat at chance (F1 0) for up to three
    epochs and the best was whichever broke out late: a lottery no pruner or warm start could be judged by."""

    examples: int  # synthetic examples (train, validation and test together)
    trials: int
    epochs: int
    tokenizer: Path | None = None  # trained once and saved (`save_tokenizer`): every study gets the same losses
    validation_fraction: float = 0.2  # of the examples left after the test split, as the demo

    @property
    def size(self) -> str:
        return (
            f"demo problem, {self.examples} examples ({self.validation_fraction:.0%} of train+validation for "
            f"validation), {self.trials} trials x {self.epochs} epochs"
        )

    def study(
        self,
        name: str,
        seed: int,
        pruner: dict | None = None,
        warm_from: list[str] | None = None,
        top_k: int = 1,
        trials: int | None = None,
        stop_at: float | None = None,
    ):
        """The demo study `name`: TPE seed `seed`, `pruner` (none by default), no early stopping, no checkpoints;
        `trials` instead of the problem's, `study.stop_at`."""
        from workbench.config.study_file import load_study_file

        sets: dict = {
            "study.name": name,
            "study.n_trials": self.trials if trials is None else trials,
            "study.stop_at": stop_at,
            "study.sampler.seed": seed,
            "study.pruner": pruner or {"type": "none"},
            "data.synthetic.n_examples": self.examples,
            "data.validation_fraction": self.validation_fraction,
            "training.num_train_epochs": self.epochs,
            "training.save_strategy": "no",
            "training.load_best_model_at_end": False,
            "early_stopping": None,
        }
        if self.tokenizer:
            sets["tokenizer.path"] = str(self.tokenizer)
        if warm_from:
            sets["study.warm_start"] = {"from": warm_from, "top_k": top_k}
        return load_study_file(DEMO, sets)

    def save_tokenizer(self, where: Path) -> DemoProblem:
        """This problem with its tokenizer trained once and saved at `where`."""
        from dataclasses import replace

        from workbench.data.splits import prepare_data

        prepare_data(self.study("tokenizer", 0)).tokenizer.save_pretrained(where)
        return replace(self, tokenizer=where)


def run_demo_study(spec, folder: Path) -> list:
    """Run `spec` (no registration) in `folder`; its trials (Optuna's), in trial order.

    In a process of `pool()`, the study sizes torch's threads to its share of the cores."""
    import optuna

    from workbench.study.session import RunOptions, run_session

    quiet()
    os.chdir(folder)
    run_session(spec, RunOptions(register=False), progress=lambda line: None)
    study = optuna.load_study(study_name=spec.study.name, storage=f"sqlite:///{folder}/mlruns/optuna.db")
    return sorted(study.trials, key=lambda t: t.number)


def sst2_texts(n: int, split: str = "train") -> tuple[list[str], list[int]]:
    """The first `n` rows of an SST-2 split: texts and labels."""
    from workbench.core.tables import read_table

    frame = read_table(SST2 / f"{split}.tsv", f"sst2 {split}").head(n)
    return [str(t) for t in frame["sentence"]], [int(x) for x in frame["label"]]


def run_figures(figures: Callable[[bool], list[Figure]], doc: str) -> None:
    """`python benchmarks/NAME.py [--quick]`: the benchmark's figures as JSON lines."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for figure in figures(args.quick):
        print(figure.line())
