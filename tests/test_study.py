"""Real studies on the tiny study: SQLite Optuna storage and MLflow store in tmp_path."""

import subprocess
import sys

import optuna
import pytest
from helpers import study_runs, tracking_client, trial_runs

from workbench.cli.commands import main
from workbench.config.study_file import load_study_file
from workbench.stores.storage import open_study, resolve_storage
from workbench.study.session import RunOptions, run_session


def stored_trials(name="tiny"):
    return optuna.load_study(study_name=name, storage=resolve_storage()).trials


@pytest.mark.slow
def test_resume_runs_only_what_is_missing_and_trials_adds_exactly(write_study, capsys):
    # a categorical parameter too: its stored description (JSON lists) must match on resume
    path = write_study(
        study={"n_trials": 2},
        search_space={
            "training.learning_rate": {"low": 1.0e-3, "high": 5.0e-3, "log": True},
            "model.hidden_size": {"choices": [16, 24]},
        },
    )
    assert main(["study", "run", str(path), "--no-register"]) == 0
    assert len(stored_trials()) == 2
    assert main(["study", "run", str(path), "--no-register"]) == 0
    assert len(stored_trials()) == 2, "target met: a resumed study runs no new trial"
    assert "ran 0 trials" in capsys.readouterr().out
    assert main(["study", "run", str(path), "--trials", "2", "--no-register"]) == 0
    assert len(stored_trials()) == 4
    client = tracking_client()
    parents = study_runs(client)
    assert len(parents) == 1, "the parent run is found again on resume"
    runs = trial_runs(client)
    assert sorted(int(r.data.tags["optuna.trial.number"]) for r in runs) == [0, 1, 2, 3]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in runs)


@pytest.mark.slow
def test_trial_runs_hold_params_step_metrics_and_optuna_tags(write_study):
    spec = load_study_file(write_study(study={"n_trials": 1}))
    outcome = run_session(spec, RunOptions(register=False), progress=lambda line: None)
    assert outcome.states == {"COMPLETE": 1}
    client = tracking_client()
    (run,) = trial_runs(client)
    assert run.info.status == "FINISHED"
    assert run.data.tags["optuna.study"] == "tiny" and run.data.tags["optuna.trial.state"] == "COMPLETE"
    assert float(run.data.params["training.learning_rate"]) == pytest.approx(
        stored_trials()[0].params["training.learning_rate"]
    )
    assert run.data.params["model.hidden_size"] == "16"
    history = client.get_metric_history(run.info.run_id, "eval_accuracy")
    assert len(history) == 2, "one point per evaluation (2 epochs)"
    assert history[0].step < history[1].step
    assert stored_trials()[0].user_attrs["mlflow_run_id"] == run.info.run_id
    assert stored_trials()[0].value == pytest.approx(max(m.value for m in history)), (
        "the trial's value is its best evaluation"
    )


@pytest.mark.slow
def test_failing_and_pruned_trials_are_recorded_and_the_study_goes_on(write_study):
    # num_heads 3 does not divide hidden_size 16: those trials fail in model construction
    path = write_study(
        study={"n_trials": 4, "sampler": {"type": "grid"}, "pruner": {"type": "median", "n_startup_trials": 1}},
        search_space={"model.num_heads": {"choices": [2, 3]}, "training.learning_rate": {"choices": [3.0e-3, 1.0e-5]}},
    )
    outcome = run_session(load_study_file(path), RunOptions(register=False), progress=lambda line: None)
    trials = stored_trials()
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(trials) == 4 and len(failed) == 2
    assert all(t.params["model.num_heads"] == 3 for t in failed)
    assert all("divisible" in t.user_attrs["fail_reason"] for t in failed)
    client = tracking_client()
    by_number = {int(r.data.tags["optuna.trial.number"]): r for r in trial_runs(client)}
    for t in trials:
        run = by_number[t.number]
        assert run.data.tags["optuna.trial.state"] == t.state.name
        expected = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}[t.state.name]
        assert run.info.status == expected  # pruned: stopped on purpose, not a failure nor a Ctrl-C
    assert "divisible" in by_number[failed[0].number].data.tags["mlflow.note.content"]
    assert outcome.best_trial is not None


def test_resumed_study_with_another_direction_is_refused(write_study):
    spec = load_study_file(write_study(study={"n_trials": 0}))
    open_study(spec, resolve_storage())
    changed = load_study_file(write_study(study={"n_trials": 0, "direction": "minimize"}))
    from workbench.core.errors import StudyFileError

    with pytest.raises(StudyFileError, match="study.direction: minimize differs from the stored study"):
        open_study(changed, resolve_storage())


@pytest.mark.slow
def test_the_same_study_run_twice_gives_the_same_tokenizer_and_trial_values(write_study, tmp_path):
    # a vocabulary smaller than the corpus asks for: the cut falls among pieces seen equally often
    path = write_study(study={"n_trials": 2}, tokenizer={"vocab_size": 120})
    values, tokenizers = [], []
    for name in ("first", "second"):
        where = tmp_path / name
        where.mkdir()
        subprocess.run(
            [sys.executable, "-m", "workbench", "study", "run", str(path), "--no-register"], cwd=where, check=True
        )
        trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{where}/mlruns/optuna.db").trials
        values.append([t.value for t in trials])
        best = max(trials, key=lambda t: t.value)
        tokenizers.append(
            (where / "mlruns" / "trials" / "tiny" / f"trial-{best.number}" / "model" / "tokenizer.json").read_bytes()
        )
    assert values[0] == values[1] and None not in values[0]
    assert tokenizers[0] == tokenizers[1]


@pytest.mark.slow
def test_stop_at_starts_no_trial_once_the_best_reaches_it_and_a_resume_keeps_stopped(write_study, capsys):
    # any trained model's accuracy is >= 0: the first trial is good enough, the other 4 never start
    path = write_study(
        study={"n_trials": 5, "metric": "eval_accuracy", "direction": "maximize", "stop_at": 0.0}, search_space={}
    )
    assert main(["study", "run", str(path), "--no-register"]) == 0
    out = capsys.readouterr().out
    assert "study tiny: trial 0 reached eval_accuracy" in out and "(study.stop_at 0); no new trial" in out
    assert [t.state.name for t in stored_trials()] == ["COMPLETE"]
    assert main(["study", "run", str(path), "--no-register"]) == 0
    assert "ran 0 trials" in capsys.readouterr().out, "resumed: still good enough"


@pytest.mark.slow
def test_timeout_starts_no_trial_after_the_budget_and_resume_counts_time_spent(write_study, capsys):
    # 30 epochs and no early stopping: the first trial must outlast the 1 s budget however fast trials get
    path = write_study(
        study={"n_trials": 50, "timeout": 1}, search_space={}, training={"num_train_epochs": 30}, early_stopping=None
    )
    assert main(["study", "run", str(path), "--no-register"]) == 0
    out = capsys.readouterr().out
    assert "time budget of 1 s is spent; no new trial" in out
    assert len(stored_trials()) == 1, "the first trial outlasts the budget: no second one starts"
    assert main(["study", "run", str(path), "--no-register"]) == 0  # resumed: the second spent already
    assert "ran 0 trials" in capsys.readouterr().out
    assert len(stored_trials()) == 1
