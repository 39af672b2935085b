import numpy as np
import pytest
from transformers.trainer_utils import EvalPrediction

from workbench.study_file import load_study_file
from workbench.training import build_training_args, compute_metrics


def test_compute_metrics_binary_and_macro():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [2.0, 0.0]])
    metrics = compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 0, 0])))
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["precision"] == pytest.approx(0.5)
    assert metrics["recall"] == pytest.approx(1.0)
    assert metrics["f1"] == pytest.approx(2 / 3)
    three = np.eye(3)[[0, 1, 2, 2]] * 3
    macro = compute_metrics(EvalPrediction(predictions=three, label_ids=np.array([0, 1, 2, 1])))
    assert macro["accuracy"] == pytest.approx(0.75)
    assert macro["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_training_args_take_the_study_file_and_keep_ours(write_study, tmp_path):
    spec = load_study_file(write_study(training={"num_train_epochs": 4, "report_to": "mlflow", "eval_strategy": "steps", "eval_steps": 5}))
    args = build_training_args(spec, tmp_path / "out")
    assert args.num_train_epochs == 4
    assert args.eval_strategy == "steps" and args.eval_steps == 5
    assert args.report_to == [] or args.report_to == "none" or args.report_to == ["none"], "metrics go through our callback only"
    assert args.metric_for_best_model == "eval_accuracy" and args.greater_is_better
    assert args.load_best_model_at_end and args.disable_tqdm


def test_batches_pad_to_the_study_files_multiple(write_study, tmp_path):
    """`data.pad_to_multiple_of` rounds each batch's length up (8 suits GPU tensor cores); absent, no rounding."""
    from workbench.data import prepare_data
    from workbench.training import build_trainer

    for multiple, expected in ((None, lambda n: n), (8, lambda n: -(-n // 8) * 8)):
        spec = load_study_file(write_study(data={"pad_to_multiple_of": multiple} if multiple else {}))
        data = prepare_data(spec)
        trainer = build_trainer(spec, data, build_training_args(spec, tmp_path / "out"), [])
        rows = [data.train[i] for i in range(5)]
        longest = max(len(r["input_ids"]) for r in rows)
        batch = trainer.data_collator(rows)
        assert batch["input_ids"].shape[1] == expected(longest)
