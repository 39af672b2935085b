import numpy as np
import pytest
from transformers.trainer_utils import EvalPrediction

from workbench.config.study_file import load_study_file
from workbench.trial.training import build_training_args, compute_metrics


def test_compute_metrics_binary_of_the_positive_label_macro_weighted_and_per_class():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [2.0, 0.0]])
    prediction = EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 0, 0]))
    metrics = compute_metrics(prediction, ("ham", "spam"), positive=1)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["precision"] == pytest.approx(0.5)
    assert metrics["recall"] == pytest.approx(1.0)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["f1_spam"] == pytest.approx(2 / 3) and metrics["recall_ham"] == pytest.approx(2 / 3)
    assert compute_metrics(prediction, ("ham", "spam"), positive=0)["f1"] == pytest.approx(metrics["f1_ham"])
    assert not {"f1", "precision", "recall"} & set(compute_metrics(prediction, ("ham", "spam"))), (
        "no positive label: no guess"
    )
    three = np.eye(3)[[0, 1, 2, 2]] * 3
    macro = compute_metrics(EvalPrediction(predictions=three, label_ids=np.array([0, 1, 2, 1])), ("a", "b", "c/d"))
    assert macro["accuracy"] == pytest.approx(0.75)
    assert macro["f1"] == macro["f1_macro"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert macro["f1_weighted"] == pytest.approx((1 + 2 * 2 / 3 + 2 / 3) / 4)
    assert macro["recall_b"] == pytest.approx(0.5) and macro["f1_c_d"] == pytest.approx(2 / 3), "MLflow-safe label keys"


def test_training_args_take_the_study_file_and_keep_ours(write_study, tmp_path):
    spec = load_study_file(
        write_study(training={"num_train_epochs": 4, "report_to": "mlflow", "eval_strategy": "steps", "eval_steps": 5})
    )
    args = build_training_args(spec, tmp_path / "out")
    assert args.num_train_epochs == 4
    assert args.eval_strategy == "steps" and args.eval_steps == 5
    assert args.report_to == [] or args.report_to == "none" or args.report_to == ["none"], (
        "metrics go through our callback only"
    )
    assert args.metric_for_best_model == "eval_accuracy" and args.greater_is_better
    assert args.load_best_model_at_end and args.disable_tqdm


def skewed_study(workdir, write_study, **changes):
    """Keyword reviews (tests/registry_models.py) kept 90% negative / 10% positive, as a csv study of one trial."""
    import pandas as pd
    from registry_models import keyword_frame

    frame = keyword_frame(1500, seed=0)
    negative, positive = frame[frame.label == "negative"], frame[frame.label == "positive"]
    frame = pd.concat([negative.iloc[:540], positive.iloc[:60]]).sample(frac=1.0, random_state=0)
    frame.to_csv(workdir / "skewed.csv", index=False)
    return load_study_file(
        write_study(
            study={"name": "skewed", "metric": "eval_loss", "direction": "minimize", "n_trials": 1},
            data={"source": "files", "files": {"train": "skewed.csv"}, "positive_label": "positive"},
            training={"num_train_epochs": 2, "learning_rate": 3.0e-3, "seed": 0},
            search_space={},
            **changes,
        )
    )


@pytest.mark.slow
def test_class_weights_make_the_minority_class_predicted_more_often(workdir, write_study):
    from workbench.data.splits import prepare_data
    from workbench.trial.training import WeightedLossTrainer, build_trainer

    predicted = {}
    for name, loss in (("plain", {}), ("balanced", {"class_weights": "balanced"})):
        spec = skewed_study(workdir, write_study, loss=loss)
        data = prepare_data(spec)
        trainer = build_trainer(spec, data, build_training_args(spec, workdir / name), [])
        assert isinstance(trainer, WeightedLossTrainer) == bool(loss)
        trainer.train()
        logits = trainer.predict(data.validation).predictions
        predicted[name] = int((logits.argmax(-1) == data.label_names.index("positive")).sum())
        if loss:
            counts = np.bincount(data.splits.train["label"])
            assert data.class_weights == pytest.approx(tuple(len(data.splits.train) / (2 * counts))), (
                "as compute_class_weight"
            )
    assert predicted["balanced"] > predicted["plain"], predicted


@pytest.mark.slow
def test_class_weights_are_logged_on_the_trial_run(workdir, write_study):
    from workbench.cli.commands import main
    from workbench.stores.tracking import mlflow_client, resolve_tracking_uri

    skewed_study(workdir, write_study, loss={"class_weights": [1.0, 4.0], "label_smoothing": 0.1})
    assert main(["study", "run", str(workdir / "study.yaml"), "--no-register"]) == 0
    client = mlflow_client(resolve_tracking_uri())
    (run,) = client.search_runs(
        [client.get_experiment_by_name("skewed").experiment_id], "tags.`workbench.role` = 'trial'"
    )
    params = run.data.params
    assert (
        params["loss.class_weight.negative"],
        params["loss.class_weight.positive"],
        params["loss.label_smoothing"],
    ) == ("1.0", "4.0", "0.1")


def test_batches_pad_to_the_study_files_multiple(write_study, tmp_path):
    """`data.pad_to_multiple_of` rounds each batch's length up (8 suits GPU tensor cores); absent, no rounding."""
    from workbench.data.splits import prepare_data
    from workbench.trial.training import build_trainer

    for multiple, expected in ((None, lambda n: n), (8, lambda n: -(-n // 8) * 8)):
        spec = load_study_file(write_study(data={"pad_to_multiple_of": multiple} if multiple else {}))
        data = prepare_data(spec)
        trainer = build_trainer(spec, data, build_training_args(spec, tmp_path / "out"), [])
        rows = [data.train[i] for i in range(5)]
        longest = max(len(r["input_ids"]) for r in rows)
        batch = trainer.data_collator(rows)
        assert batch["input_ids"].shape[1] == expected(longest)


def test_every_trainer_method_we_override_is_still_the_installed_trainers_with_the_same_parameters():
    import inspect

    from transformers import Trainer

    from workbench.trial.training import WeightedLossTrainer, WorkbenchTrainer

    def parameters(function):  # what a caller passes: annotations are spelled differently
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    overrides = {
        (cls.__name__, name): f
        for cls in (WorkbenchTrainer, WeightedLossTrainer)
        for name, f in vars(cls).items()
        if getattr(f, "__override__", False)
    }
    assert {name for _, name in overrides} >= {"_save_checkpoint", "compute_loss"}
    for (cls, name), override in overrides.items():
        assert callable(getattr(Trainer, name, None)), f"transformers' Trainer has no {name} any more ({cls})"
        assert parameters(override) == parameters(getattr(Trainer, name)), f"Trainer.{name} changed ({cls})"
    assert hasattr(Trainer, "loss_is_scaled_for_ga")  # WeightedLossTrainer sets it: the Trainer must read it


@pytest.mark.slow
def test_the_checkpoint_saved_on_sigterm_can_resume_and_outlives_train(write_study, optuna_url, tmp_path, monkeypatch):
    import optuna
    from transformers import TrainerCallback

    from workbench.core import distributed
    from workbench.data.splits import prepare_data
    from workbench.stores.tracking import NullTrialRun
    from workbench.trial.callbacks import TrialCallback
    from workbench.trial.training import build_trainer

    class Sigterm(TrainerCallback):  # the signal lands during step 8, in the second epoch (6 steps each)
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 8:
                monkeypatch.setattr(distributed, "preempted", lambda: True)

    spec = load_study_file(write_study(training={"num_train_epochs": 3}, early_stopping=None))
    reporter = TrialCallback(optuna.create_study(storage=optuna_url).ask(), NullTrialRun(), "eval_accuracy", True)
    args = build_training_args(spec, tmp_path / "checkpoints")
    trainer = build_trainer(spec, prepare_data(spec), args, [Sigterm(), reporter])
    trainer.train()
    assert reporter.preempted_at == 8
    saved = tmp_path / "checkpoints" / "checkpoint-8"
    assert {"optimizer.pt", "scheduler.pt", "trainer_state.json"} <= {p.name for p in saved.iterdir()}
    assert (tmp_path / "checkpoints" / "checkpoint-6").is_dir()  # the best so far, as always
    assert (args.save_only_model, args.save_total_limit) == (True, 1)  # the trial's arguments, as logged
