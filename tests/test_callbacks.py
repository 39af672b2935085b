"""TrialCallback driven by hand with the Trainer's own objects, a real Optuna trial and a real MLflow run:
what each evaluation logs, reports and prunes, and a SIGTERM that changes only `control`."""

from __future__ import annotations

import optuna
import pytest
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from workbench.core import distributed
from workbench.stores.tracking import start_run
from workbench.trial.callbacks import NonFiniteLoss, TrialCallback

optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture
def setting(optuna_url, new_mlflow_store, tmp_path):
    """(callback, its Optuna study, its MLflow run, TrainingArguments, evaluations seen by the live display)."""
    study = optuna.create_study(
        storage=optuna_url, study_name="s", direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.6)
    )
    run = start_run(new_mlflow_store(tmp_path / "mlruns"), "s", "trial-0", {})
    seen: list[tuple[int, float]] = []
    callback = TrialCallback(
        study.ask(), run, "eval_accuracy", maximize=True, on_evaluation=lambda i, v: seen.append((i, v))
    )
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True)
    return callback, study, run, args, seen


def history(run, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in run.client.get_metric_history(run.run_id, key)]


def test_each_evaluation_is_logged_at_its_step_reported_to_the_trial_and_a_prune_stops_training(setting):
    callback, study, run, args, seen = setting
    control = TrainerControl()
    callback.on_evaluate(args, TrainerState(global_step=10), control, metrics={"eval_accuracy": 0.8, "eval_loss": 0.4})
    assert not control.should_training_stop
    callback.on_evaluate(args, TrainerState(global_step=20), control, metrics={"eval_accuracy": 0.5, "eval_loss": 0.6})
    assert control.should_training_stop  # 0.5 is under the pruner's threshold
    assert callback.pruned_at == 2 and callback.best == 0.8
    assert history(run, "eval_accuracy") == [(10, 0.8), (20, 0.5)]
    assert history(run, "eval_loss") == [(10, 0.4), (20, 0.6)]
    assert history(run, "objective") == [(10, 0.8), (20, 0.8)]  # the best so far: a pruned run keeps it
    assert history(run, "best_eval_accuracy") == [(10, 0.8), (20, 0.8)]
    assert study.trials[0].intermediate_values == {1: 0.8, 2: 0.5}  # Optuna's step: the evaluation's index
    assert seen == [(1, 0.8), (2, 0.5)]


def test_an_evaluation_without_the_metric_or_with_a_nan_loss_fails_the_trial_after_logging(setting):
    callback, study, run, args, _ = setting
    with pytest.raises(KeyError, match="metric 'eval_accuracy' was not computed"):
        callback.on_evaluate(args, TrainerState(global_step=5), TrainerControl(), metrics={"eval_loss": 0.4})
    with pytest.raises(NonFiniteLoss, match="eval_loss is nan at step 6"):
        callback.on_evaluate(
            args,
            TrainerState(global_step=6),
            TrainerControl(),
            metrics={"eval_accuracy": 0.9, "eval_loss": float("nan")},
        )
    assert history(run, "eval_loss")[0] == (5, 0.4)  # what was measured is still logged
    assert study.trials[0].intermediate_values == {}
    assert callback.evaluations == 0


def test_sigterm_asks_for_a_checkpoint_and_a_stop_through_control_only(setting, monkeypatch):
    callback, _, _, args, _ = setting
    monkeypatch.setattr(distributed, "preempted", lambda: True)
    before = args.to_dict()
    control = TrainerControl()
    callback.on_step_end(args, TrainerState(global_step=7), control)
    assert control.should_save and control.should_training_stop
    assert callback.preempted_at == 7
    assert args.to_dict() == before  # the Trainer saves it resumable: WorkbenchTrainer._save_checkpoint
    callback.on_epoch_end(args, TrainerState(global_step=7), control)
    assert not control.should_save and not control.should_evaluate  # no extra save inside the grace period


def test_every_event_the_callback_handles_is_a_trainer_callback_event():
    ours = {name for name in vars(TrialCallback) if name.startswith("on_")}
    assert ours and ours <= set(vars(TrainerCallback)), "transformers renamed or dropped a callback event"
