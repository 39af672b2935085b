"""What a running study prints: plain lines (a pipe), only failures and the summary (--quiet),
a live display (a terminal)."""

import io
import re

import pytest
from rich.console import Console

from workbench.cli.commands import main
from workbench.config.study_file import load_study_file
from workbench.core.progress import LiveProgress, StudyState
from workbench.study.session import RunOptions, run_session

TRIAL_LINE = re.compile(r"^  trial +(\d+) (COMPLETE|PRUNED|FAIL) ", re.M)
TERMINAL_CODE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def screen_lines(out: str) -> str:
    """What a terminal shows, as lines: escape codes dropped, a carriage return starts a line over."""
    return TERMINAL_CODE.sub("", out).replace("\r", "\n")


@pytest.mark.slow
def test_plain_lines_when_not_a_terminal_and_quiet_prints_failures_and_the_summary(write_study, capsys):
    path = write_study(study={"n_trials": 1})
    assert main(["study", "run", str(path), "--no-register"]) == 0
    out = capsys.readouterr().out
    assert TRIAL_LINE.findall(out) == [("0", "COMPLETE")], "one plain line per trial, as logs and CI read it"
    assert out.startswith("study tiny: 0/1 trials done") and "\x1b[" not in out, "no terminal codes in a pipe"

    assert main(["study", "run", str(path), "--no-register", "--quiet", "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert TRIAL_LINE.findall(out) == [] and "trials done" not in out, "--quiet: no headline, no trial line"
    assert "ran 1 trials" in out and "best: trial" in out, "the final summary still prints"

    # num_heads 3 does not divide hidden_size 16: that trial fails, and --quiet says so
    broken = write_study(
        "broken.yaml",
        study={"name": "broken", "n_trials": 2, "sampler": {"type": "grid"}},
        search_space={"model.num_heads": {"choices": [2, 3]}},
    )
    assert main(["study", "run", str(broken), "--no-register", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert [state for _, state in TRIAL_LINE.findall(out)] == ["FAIL"] and "divisible" in out


@pytest.mark.slow
def test_a_terminal_gets_a_live_display_with_counts_best_eta_and_the_running_evaluation(write_study):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160, color_system=None)
    spec = load_study_file(write_study(study={"n_trials": 2}))
    run_session(spec, RunOptions(register=False), progress=LiveProgress(console))
    assert "\x1b[" in buffer.getvalue(), "drawn in place with terminal codes"
    out = screen_lines(buffer.getvalue())
    assert [n for n, _ in TRIAL_LINE.findall(out)] == ["0", "1"], "each trial's line still scrolls above the display"
    assert re.search(r"study tiny .*2/2 .*2 complete +best eval_accuracy 0\.\d{4} \(trial \d\)", out), (
        "done of target, states, best"
    )
    assert re.search(r"\d:\d\d:\d\d ETA \d:\d\d:\d\d", out), "elapsed and ETA"
    assert re.search(r"trial 1: evaluation [12], eval_accuracy=0\.\d{4}", out), "the running trial's latest evaluation"


def test_the_live_display_without_a_study_run():
    buffer = io.StringIO()
    live = LiveProgress(Console(file=buffer, force_terminal=True, width=160, color_system=None))
    live.update(StudyState("demo", "eval_f1", 3, 12, {"COMPLETE": 2, "PRUNED": 1}, 0.8542, 1))
    live.trial_started(3)
    live.evaluation(3, 2, 0.8123)
    live.line("a notice")
    live.trial_finished(3, "PRUNED", "  trial   3 PRUNED   eval_f1=0.8123")
    live.update(StudyState("demo", "eval_f1", 4, 12, {"COMPLETE": 2, "PRUNED": 2}, 0.8542, 1))
    live.close()
    out = screen_lines(buffer.getvalue())
    assert "trial 3: evaluation 2, eval_f1=0.8123" in out
    assert "a notice" in out and "trial   3 PRUNED" in out
    assert re.search(r"study demo .*4/12 +2 complete 2 pruned +best eval_f1 0\.8542 \(trial 1\)", out)
