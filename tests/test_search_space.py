import optuna
import pytest

from workbench.config.search_space import CategoricalSpec, RangeSpec, grid_of, parse_param, suggest_params


def test_suggest_params_gives_typed_values_in_range():
    space = {
        "model.hidden_size": parse_param({"choices": [16, 32]}),
        "model.num_layers": parse_param({"low": 1, "high": 3}),
        "training.learning_rate": parse_param({"low": 1e-4, "high": 1e-2, "log": True}),
        "training.weight_decay": parse_param({"low": 0.0, "high": 0.1, "step": 0.05}),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        params = suggest_params(study.ask(), space)
        assert params["model.hidden_size"] in (16, 32)
        assert isinstance(params["model.num_layers"], int) and 1 <= params["model.num_layers"] <= 3
        assert 1e-4 <= params["training.learning_rate"] <= 1e-2
        assert round(params["training.weight_decay"] / 0.05, 6) in (0.0, 1.0, 2.0)
    distributions = study.trials[0].distributions
    assert distributions["training.learning_rate"].log


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"choices": []}, "choices is empty"),
        ({"low": 3, "high": 1}, "greater than high"),
        ({"low": 0.0, "high": 1.0, "log": True}, "log: true needs low > 0"),
        ({"lo": 1}, "needs `choices"),
    ],
)
def test_bad_parameters_are_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_param(raw)


def test_grid_enumerates_choices_and_stepped_ranges():
    grid = grid_of(
        {
            "model.hidden_size": CategoricalSpec(choices=(16, 32)),
            "model.num_layers": RangeSpec(low=1, high=3),
            "training.weight_decay": RangeSpec(low=0.0, high=0.1, step=0.05),
        }
    )
    assert grid["model.hidden_size"] == [16, 32]
    assert grid["model.num_layers"] == [1, 2, 3]
    assert grid["training.weight_decay"] == pytest.approx([0.0, 0.05, 0.1])
