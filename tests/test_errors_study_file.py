"""Broken study files: one line naming the key and the fix, exit code 2, both stores unchanged."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from helpers import TINY, merge
from stores import refused, snapshot

from workbench.cli.commands import main

# Tests on the seeded stores are marked slow: the `seeded` fixture trains the tiny study (once per session).


CASES = {
    "unknown top-level key": ({"bogus": 1}, ["bogus: unknown key", "known: data"]),
    "unknown model key": (
        {"model": {"hiden_size": 32}},
        ["model.hiden_size: not a WorkbenchConfig field (did you mean hidden_size?)"],
    ),
    "unknown training key": (
        {"training": {"learnin_rate": 0.1}},
        ["training.learnin_rate: not a TrainingArguments field (did you mean learning_rate?)"],
    ),
    "wrong type in training": (
        {"training": {"learning_rate": "fast"}},
        ["training.learning_rate: 'fast' is not valid", "number"],
    ),
    "wrong type in model": ({"model": {"num_layers": "two"}}, ["model.num_layers: 'two' is not valid", "integer"]),
    "boolean for a number": (
        {"training": {"num_train_epochs": True}},
        ["training.num_train_epochs: True is not valid"],
    ),
    "non-positive batch size": (
        {"training": {"per_device_train_batch_size": 0}},
        ["training.per_device_train_batch_size: must be positive"],
    ),
    "heads do not divide width": (
        {"model": {"num_heads": 3}},
        ["model: hidden_size (16) must be divisible by num_heads (3)"],
    ),
    "unknown strategy": (
        {"training": {"eval_strategy": "sometimes"}},
        ["training: sometimes is not a valid IntervalStrategy", "'epoch'"],
    ),
    "strategies that cannot combine": (
        {"training": {"save_strategy": "steps", "save_steps": 7}},
        ["training: --load_best_model_at_end requires the save and eval strategy to match"],
    ),
    "low > high": (
        {"search_space": {"training.learning_rate": {"low": 0.1, "high": 0.01}}},
        ["search_space.training.learning_rate: low (0.1) is greater than high (0.01): swap them"],
    ),
    "log with low <= 0": (
        {"search_space": {"training.learning_rate": {"low": 0.0, "high": 0.1, "log": True}}},
        ["search_space.training.learning_rate: log: true needs low > 0"],
    ),
    "empty choices": (
        {"search_space": {"model.hidden_size": {"choices": []}}},
        ["search_space.model.hidden_size: choices is empty"],
    ),
    "wrong type in choices": (
        {"search_space": {"model.hidden_size": {"choices": [16, "big"]}}},
        ["search_space.model.hidden_size: 'big' is not valid"],
    ),
    "unknown search-space field": (
        {"search_space": {"training.lr": {"low": 0.1, "high": 0.2}}},
        ["search_space.training.lr: not a TrainingArguments field"],
    ),
    "grid sampler over a float range": (
        {"study": {"sampler": {"type": "grid"}}},
        ["search_space.training.learning_rate: the grid sampler needs `choices` or a `step` for floats"],
    ),
    "unknown sampler": (
        {"study": {"sampler": {"type": "bayes"}}},
        ["study.sampler.type: unknown 'bayes' (choose one of tpe"],
    ),
    "unknown sampler option": (
        {"study": {"sampler": {"type": "random", "sed": 1}}},
        ["study.sampler.sed: not an option of optuna.samplers.RandomSampler (did you mean seed?)"],
    ),
    "unknown pruner": (
        {"study": {"pruner": {"type": "early"}}},
        ["study.pruner.type: unknown 'early' (choose one of median"],
    ),
    "misspelt pruner patience": (
        {"study": {"pruner": {"type": "median", "patiense": 2}}},
        ["study.pruner.patiense: not an option of optuna.pruners.MedianPruner (did you mean patience?)"],
    ),
    "negative pruner patience": (
        {"study": {"pruner": {"type": "median", "patience": -1}}},
        ["study.pruner.patience: Input should be greater than or equal to 0"],
    ),
    "metric never computed": (
        {"study": {"metric": "eval_auc"}},
        ["study.metric: 'eval_auc' is not computed by a trial (choose one of eval_loss"],
    ),
    "direction": ({"study": {"direction": "up"}}, ["study.direction: Input should be 'maximize' or 'minimize'"]),
    "negative n_trials": ({"study": {"n_trials": -1}}, ["study.n_trials: Input should be greater than or equal to 0"]),
    "several problems at once": (
        {"model": {"hiden_size": 32}, "study": {"direction": "up"}},
        ["model.hiden_size: not a WorkbenchConfig field", "study.direction:"],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.slow
def test_invalid_study_file_is_refused_and_changes_nothing(name, stores, write_study, workdir, capsys):
    changes, expected = CASES[name]
    path = write_study(**changes)
    err = refused(capsys, ["study", "run", str(path)])
    assert err.startswith(f"error: {path}: "), err
    for text in expected:
        assert text in err, err
    assert snapshot(workdir) == stores


@pytest.mark.parametrize(
    "text, expected",
    [
        ("study: {name: x\n  metric: [", "not valid YAML at line"),
        ("- just\n- a list\n", "must be a YAML mapping with a `study:` section"),
        ("!!python/object/apply:os.system ['touch pwned']\n", "tag !!python/object/apply:os.system is not allowed"),
        (
            "study: !!python/object/new:os.system ['touch pwned']\n",
            "is not allowed: a study file holds plain YAML data only",
        ),
    ],
)
@pytest.mark.slow
def test_unreadable_study_file_is_refused(text, expected, stores, workdir, capsys):
    (workdir / "bad.yaml").write_text(text)
    err = refused(capsys, ["study", "run", "bad.yaml"])
    assert expected in err, err
    assert not (workdir / "pwned").exists()  # the safe loader built nothing and ran nothing
    assert snapshot(workdir) == stores


@pytest.mark.slow
def test_missing_and_non_utf8_study_files(stores, workdir, capsys):
    assert "nowhere.yaml: file not found: check the path" in refused(capsys, ["study", "run", "nowhere.yaml"])
    (workdir / "latin1.yaml").write_bytes(yaml.safe_dump(TINY).replace("name: tiny", "name: café").encode("latin-1"))
    assert "cannot read the file (UnicodeDecodeError): save it as UTF-8 text" in refused(
        capsys, ["study", "run", "latin1.yaml"]
    )
    assert snapshot(workdir) == stores


@pytest.mark.slow
def test_bad_set_override_is_refused(stores, write_study, workdir, capsys):
    path = write_study()
    err = refused(capsys, ["study", "run", str(path), "--set", "training.learning_rat=0.1"])
    assert "training.learning_rat: not a TrainingArguments field (did you mean learning_rate?)" in err
    assert "expected KEY=VALUE" in refused(capsys, ["study", "run", str(path), "--set", "oops"])
    assert snapshot(workdir) == stores


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"study": {"direction": "minimize"}}, "study.direction: minimize differs from the stored study (maximize)"),
        ({"study": {"metric": "eval_f1"}}, "study.metric: eval_f1 differs from the stored study (eval_accuracy)"),
        (
            {"search_space": {"training.learning_rate": {"low": 1.0e-4, "high": 5.0e-3, "log": True}}},
            "search_space: training.learning_rate differ from the stored study",
        ),
    ],
)
@pytest.mark.slow
def test_resumed_study_that_conflicts_with_the_stored_one(changes, expected, stores, write_study, workdir, capsys):
    path = write_study(**changes)
    err = refused(capsys, ["study", "run", str(path), "--trials", "1"])
    assert expected in err and "rename study.name to start a new study" in err, err
    assert snapshot(workdir) == stores


@pytest.mark.slow
def test_search_space_combination_that_cannot_build_fails_the_trial_not_the_study(write_study, workdir, capsys):
    """Some sampled values cannot build the model: those trials FAIL with the reason, the rest run."""
    import optuna

    study = merge(
        TINY, {"study": {"n_trials": 2, "sampler": {"type": "grid"}}, "model": {"num_heads": 3, "hidden_size": 18}}
    )
    study.update(search_space={"model.hidden_size": {"choices": [18, 16]}}, registry={})
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    assert main(["study", "run", str(path)]) == 0
    trials = {
        t.params["model.hidden_size"]: t
        for t in optuna.load_study(study_name="tiny", storage="sqlite:///mlruns/optuna.db").trials
    }
    assert trials[18].state.name == "COMPLETE"
    assert trials[16].state.name == "FAIL"
    assert "hidden_size (16) must be divisible by num_heads (3)" in trials[16].user_attrs["fail_reason"]


@pytest.mark.slow
def test_subprocess_prints_one_line_and_no_traceback(write_study, workdir):
    path = write_study(training={"learning_rate": "fast"}, model={"hiden_size": 8})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-m", "workbench", "study", "run", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and "Traceback" not in done.stderr, done.stderr
    assert "training.learning_rate: 'fast' is not valid" in lines[0] and "(did you mean hidden_size?)" in lines[0]
    with_debug = subprocess.run(
        [sys.executable, "-m", "workbench", "--debug", "study", "run", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert with_debug.returncode != 0 and "Traceback" in with_debug.stderr
    assert not (workdir / "mlruns").exists()  # nothing was created for a refused file
