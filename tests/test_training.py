import numpy as np
import pytest
from transformers.trainer_utils import EvalPrediction

from workbench.study_file import load_study_file
from workbench.training import build_training_args, compute_metrics


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
    assert not {"f1", "precision", "recall"} & set(compute_metrics(prediction, ("ham", "spam"))), "no positive label: no guess"
    three = np.eye(3)[[0, 1, 2, 2]] * 3
    macro = compute_metrics(EvalPrediction(predictions=three, label_ids=np.array([0, 1, 2, 1])), ("a", "b", "c/d"))
    assert macro["accuracy"] == pytest.approx(0.75)
    assert macro["f1"] == macro["f1_macro"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert macro["f1_weighted"] == pytest.approx((1 + 2 * 2 / 3 + 2 / 3) / 4)
    assert macro["recall_b"] == pytest.approx(0.5) and macro["f1_c_d"] == pytest.approx(2 / 3), "MLflow-safe label keys"


def test_training_args_take_the_study_file_and_keep_ours(write_study, tmp_path):
    spec = load_study_file(write_study(training={"num_train_epochs": 4, "report_to": "mlflow", "eval_strategy": "steps", "eval_steps": 5}))
    args = build_training_args(spec, tmp_path / "out")
    assert args.num_train_epochs == 4
    assert args.eval_strategy == "steps" and args.eval_steps == 5
    assert args.report_to == [] or args.report_to == "none" or args.report_to == ["none"], "metrics go through our callback only"
    assert args.metric_for_best_model == "eval_accuracy" and args.greater_is_better
    assert args.load_best_model_at_end and args.disable_tqdm
