from pathlib import Path

import pydantic
import pytest

from workbench.config.search_space import CategoricalSpec, RangeSpec
from workbench.config.study_file import apply_overrides, load_study_file
from workbench.core.errors import StudyFileError

STUDIES = sorted((Path(__file__).parent.parent / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_every_shipped_study_file_loads(path):
    spec = load_study_file(path)
    assert spec.study.n_trials > 0
    assert spec.space, "a shipped study searches something"


def test_demo_study_is_the_documented_default():
    spec = load_study_file(Path(__file__).parent.parent / "studies" / "demo.yaml")
    assert spec.study.name == "demo"
    assert spec.study.n_trials >= 12
    assert spec.registry.model_name == "demo-classifier"
    assert spec.data.source == "synthetic"


def test_sections_are_typed_and_frozen(write_study):
    spec = load_study_file(write_study())
    assert isinstance(spec.space["training.learning_rate"], RangeSpec)
    assert spec.space["training.learning_rate"].log
    with pytest.raises(pydantic.ValidationError, match="Instance is frozen"):
        spec.study.n_trials = 5


def test_every_problem_is_reported_at_once_with_key_and_fix(write_study):
    path = write_study(
        training={"lr": 0.1, "num_train_epochs": 1},
        model={"hiden_size": 8},
        study={"direction": "up", "sampler": {"type": "annealing"}},
        search_space={"training.learning_rate": {"low": 1.0, "high": 0.1}},
    )
    with pytest.raises(StudyFileError) as info:
        load_study_file(path)
    message = str(info.value)
    assert message.startswith(str(path))
    for expected in (
        "model.hiden_size: not a WorkbenchConfig field (did you mean hidden_size?)",
        "training.lr: not a TrainingArguments field",
        "study.direction: Input should be 'maximize' or 'minimize'",
        "study.sampler.type: unknown 'annealing'",
        "search_space.training.learning_rate: low (1.0) is greater than high (0.1)",
    ):
        assert expected in message


def test_overrides_follow_one_precedence(write_study):
    spec = load_study_file(write_study(), {"training.num_train_epochs": 7, "study.n_trials": 1})
    assert spec.training["num_train_epochs"] == 7
    assert spec.study.n_trials == 1
    trial = apply_overrides(spec, {"training.num_train_epochs": 2, "model.hidden_size": 32})
    assert trial.training["num_train_epochs"] == 2
    assert trial.model["hidden_size"] == 32
    assert spec.training["num_train_epochs"] == 7, "the study spec itself is unchanged"


def test_categorical_and_range_parsing(write_study):
    spec = load_study_file(
        write_study(
            search_space={
                "model.hidden_size": {"choices": [16, 32]},
                "model.num_layers": {"low": 1, "high": 3},
                "training.weight_decay": {"low": 0.0, "high": 0.1, "step": 0.05},
            }
        )
    )
    space = spec.space
    assert isinstance(space["model.hidden_size"], CategoricalSpec)
    assert space["model.num_layers"].is_int
    assert not space["training.weight_decay"].is_int


def test_every_metric_a_trial_computes_is_accepted_per_class_ones_by_their_shape():
    from helpers import TINY, merge

    from workbench.config.study_file import validate_study
    from workbench.core.errors import StudyFileError

    for metric in ("eval_f1_macro", "eval_f1_weighted", "eval_recall", "eval_f1_positive", "eval_recall_any label"):
        assert validate_study(merge(TINY, {"study": {"metric": metric}})).study.metric == metric
    with pytest.raises(StudyFileError, match="did you mean eval_f1_macro"):
        validate_study(merge(TINY, {"study": {"metric": "eval_f1macro"}}))


def test_loss_section_is_checked():
    from helpers import TINY, merge

    from workbench.config.study_file import validate_study

    assert validate_study(merge(TINY, {"loss": {"class_weights": "balanced"}})).loss.custom
    assert validate_study(merge(TINY, {"loss": {"class_weights": [1, 3.5]}})).loss.class_weights == [1.0, 3.5]
    with pytest.raises(StudyFileError, match="loss.class_weights: give one weight per class"):
        validate_study(merge(TINY, {"loss": {"class_weights": [0, 0]}}))
    with pytest.raises(StudyFileError, match="loss.label_smoothing: training.label_smoothing_factor is set too"):
        validate_study(merge(TINY, {"loss": {"label_smoothing": 0.1}, "training": {"label_smoothing_factor": 0.1}}))
