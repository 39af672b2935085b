"""What a running study tells the person watching it: plain lines, only the summary, or a live display.

The study calls the same methods whichever is watching. `StudyProgress` prints one line per
trial (stdout not a terminal: logs, CI and tests read these lines); `QuietProgress` prints
only failed trials; `LiveProgress` keeps those lines and draws below them, with rich, the
trials done of the target, their states, the best value so far, elapsed time and ETA, and
the running trial's latest evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StudyState:
    """A study at one moment, as a progress display shows it."""

    name: str
    metric: str
    done: int  # trials that count as done toward the target
    target: int
    states: dict[str, int]  # COMPLETE/PRUNED/FAIL/RUNNING -> count
    best_value: float | None = None
    best_trial: int | None = None


class StudyProgress:
    """Plain output: every line as it comes (the default, and what a pipe or a log file gets)."""

    opened: tuple[float, int | None]  # a display's (when, trials done then): the ETA is this session's pace

    def __init__(self, write: Callable[[str], None] = print):
        self.write = write

    def line(self, text: str) -> None:
        """A notice: the study's headline, a worker's relayed line, a spent time budget."""
        self.write(text)

    def update(self, state: StudyState) -> None:
        """The study's counts and best value changed (opened, a trial ended)."""

    def _eta(self, state: StudyState) -> str:
        """Time left at this session's mean seconds per trial (workers in parallel included), as H:MM:SS."""
        since, done_then = self.opened
        if done_then is None:
            self.opened = (since, state.done)
            return "-:--:--"
        done_here, left = state.done - done_then, max(state.target - state.done, 0)
        if done_here <= 0:
            return "-:--:--"
        seconds = round((time.monotonic() - since) / done_here * left)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def trial_started(self, number: int) -> None:
        """Trial `number` starts training in this process."""

    def evaluation(self, number: int, index: int, value: float) -> None:
        """Trial `number` evaluated for the `index`-th time; `value` is the study metric."""

    def trial_finished(self, number: int, state: str, text: str) -> None:
        """Trial `number` ended in `state` (COMPLETE, PRUNED, FAIL); `text` is its one-line summary."""
        self.write(text)

    def close(self) -> None:
        """The study is over (or interrupted): stop drawing."""


class QuietProgress(StudyProgress):
    """`--quiet`: failed trials only; the command prints its summary itself."""

    def line(self, text: str) -> None:
        pass

    def trial_finished(self, number: int, state: str, text: str) -> None:
        if state == "FAIL":
            self.write(text)


def as_progress(progress: Any) -> StudyProgress:
    """A StudyProgress as given, or plain output through a `progress(line)` function (the Python API's)."""
    return progress if isinstance(progress, StudyProgress) else StudyProgress(progress)


class LiveProgress(StudyProgress):
    """A terminal's display: the plain lines scroll above a live bar that rich redraws in place."""

    def __init__(self, console: Any = None):
        from rich.console import Console

        self.console = console if console is not None else Console()
        super().__init__(lambda text: self.console.print(text, markup=False, highlight=False))
        self.bar: Any = None
        self.task: Any = None
        self.state: StudyState | None = None
        self.running = ""  # "trial 4: evaluation 2, eval_f1=0.8123"
        self.started_at: float | None = None

    def _start(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        watcher = self

        class _Bar(Progress):
            def get_renderables(self):  # the bar, then the running trial on its own line
                yield self.make_tasks_table(self.tasks)
                if watcher.running:
                    yield watcher.running

        self.bar = _Bar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[states]}"),
            TextColumn("{task.fields[best]}"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            console=self.console,
            transient=False,
            refresh_per_second=4,
        )
        self.task = self.bar.add_task("study", total=1, states="", best="", eta="-:--:--")
        self.opened = (time.monotonic(), None)

    def update(self, state: StudyState) -> None:
        starting = self.bar is None
        if starting:
            self._start()
        self.state = state
        states = " ".join(f"{n} {s.lower()}" for s, n in sorted(state.states.items()) if n)
        best = (
            f"best {state.metric} {state.best_value:.4f} (trial {state.best_trial})"
            if state.best_value is not None
            else ""
        )
        self.bar.update(
            self.task,
            description=f"study {state.name}",
            total=max(state.target, 1),
            completed=state.done,
            states=states,
            best=best,
            eta=self._eta(state),
        )
        if starting:
            self.bar.start()

    def trial_started(self, number: int) -> None:
        self.started_at = time.monotonic()
        self.running = f"  trial {number}: training"

    def evaluation(self, number: int, index: int, value: float) -> None:
        seconds = time.monotonic() - self.started_at if self.started_at is not None else 0.0
        metric = self.state.metric if self.state else "value"
        self.running = f"  trial {number}: evaluation {index}, {metric}={value:.4f} ({seconds:.0f}s)"
        if self.bar is not None:
            self.bar.refresh()

    def trial_finished(self, number: int, state: str, text: str) -> None:
        self.running = ""
        if self.bar is not None:
            self.bar.refresh()  # the line prints above the display as last drawn
        self.write(text)

    def close(self) -> None:
        if self.bar is not None:
            self.running = ""
            self.bar.stop()
            self.bar = None
