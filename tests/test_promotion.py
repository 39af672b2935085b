"""The promotion gate and rollback, on real registered versions (tests/registry_models.py)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tracking_client

from workbench.cli.commands import main
from workbench.core.keys import PROMOTION_TAG_PREFIX
from workbench.lifecycle.promotion import mcnemar_exact, paired_bootstrap


def test_mcnemar_counts_only_the_examples_the_models_disagree_on():
    truth = np.ones(100, dtype=bool)
    champion = truth.copy()
    champion[:10] = False  # the champion misses 10
    slightly = champion.copy()
    slightly[:3] = True  # the candidate gets 3 of them right: could be chance
    clearly = truth.copy()  # the candidate gets all 10: not chance
    assert not mcnemar_exact(slightly, champion, alpha=0.05).significant
    result = mcnemar_exact(clearly, champion, alpha=0.05)
    assert result.significant and result.p_value == pytest.approx(2 * 0.5**10)
    assert not mcnemar_exact(champion, clearly, alpha=0.05).significant  # worse is never significant


def test_paired_bootstrap_interval_excludes_zero_only_for_a_real_difference():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    right = np.eye(2)[labels] * 0.8 + 0.1  # confident and right
    wrong = np.eye(2)[1 - labels] * 0.8 + 0.1
    champion = np.where((np.arange(200) < 60)[:, None], wrong, right)  # wrong on 60 of 200
    better = np.where((np.arange(200) < 10)[:, None], wrong, right)
    nearly = np.where((np.arange(200) < 57)[:, None], wrong, right)
    result = paired_bootstrap("f1", labels, better, champion, maximize=True, alpha=0.05, positive=1)
    assert result.significant and result.ci[0] > 0
    assert not paired_bootstrap("f1", labels, nearly, champion, maximize=True, alpha=0.05, positive=1).significant
    assert paired_bootstrap("loss", labels, better, champion, maximize=False, alpha=0.05).significant


def _set_aliases(registry, **versions):
    """champion=2, previous_champion=None (deleted; deleting an alias the model lacks does nothing) ..."""
    client = tracking_client(registry.tracking_uri)
    for alias, version in versions.items():
        alias = alias.replace("_", "-")
        if version is None:
            client.delete_registered_model_alias(registry.name, alias)
        else:
            client.set_registered_model_alias(registry.name, alias, str(version))


def _alias(registry, alias):
    """The version `alias` points to, or None when the model has no such alias."""
    from mlflow.exceptions import MlflowException

    try:
        return str(tracking_client(registry.tracking_uri).get_model_version_by_alias(registry.name, alias).version)
    except MlflowException as e:
        if e.message != f"Registered model alias {alias} not found.":
            raise
        return None


def _tags(registry, version):
    tags = tracking_client(registry.tracking_uri).get_model_version(registry.name, str(version)).tags
    return {k.removeprefix(PROMOTION_TAG_PREFIX): v for k, v in tags.items() if k.startswith(PROMOTION_TAG_PREFIX)}


def _promote(registry, *args):
    return main(["--tracking-uri", registry.tracking_uri, "promote", registry.name, *args])


@pytest.mark.slow
def test_first_promotion_without_a_champion(keyword_registry, capsys):
    _set_aliases(keyword_registry, champion=None, previous_champion=None)
    assert _promote(keyword_registry, "--candidate", "1") == 0
    assert "PROMOTED: no champion yet" in capsys.readouterr().out
    assert _alias(keyword_registry, "champion") == "1"
    assert _tags(keyword_registry, 1)["decision"] == "promoted"


@pytest.mark.slow
def test_clearly_better_candidate_is_promoted_with_the_test_recorded(keyword_registry, capsys):
    from workbench.lifecycle.evaluation import load_eval_data

    _set_aliases(keyword_registry, champion=1, previous_champion=None)
    assert _promote(keyword_registry, "--candidate", "2") == 0
    out = capsys.readouterr().out
    assert "McNemar exact" in out and "PROMOTED" in out
    assert _alias(keyword_registry, "champion") == "2"
    assert _alias(keyword_registry, "previous-champion") == "1"
    tags = _tags(keyword_registry, 2)
    assert tags["decision"] == "promoted" and tags["forced"] == "False" and tags["champion_version"] == "1"
    assert float(tags["p_value"]) < 0.05 and tags["test"] == "McNemar exact"
    assert float(tags["candidate_score"]) > float(tags["champion_score"])
    # the data the version carries is the study's validation file, example for example
    assert tags["data_digest"] == load_eval_data(str(keyword_registry.validation_csv)).digest


@pytest.mark.slow
def test_worse_candidate_is_refused_and_the_champion_stays(keyword_registry, capsys):
    _set_aliases(keyword_registry, champion=2)
    assert _promote(keyword_registry, "--candidate", "1") == 1
    captured = capsys.readouterr()
    assert "REFUSED" in captured.out and "not better than the champion" in captured.out
    assert "not promoted" in captured.err and "@champion stays v2" in captured.err
    assert _alias(keyword_registry, "champion") == "2"
    tags = _tags(keyword_registry, 1)
    assert tags["decision"] == "refused" and tags["champion_version"] == "2"


@pytest.mark.slow
def test_a_tie_within_noise_is_refused(keyword_registry, capsys):
    _set_aliases(keyword_registry, champion=2)
    assert _promote(keyword_registry, "--candidate", "3") == 1
    assert "REFUSED" in capsys.readouterr().out
    assert _alias(keyword_registry, "champion") == "2"
    tags = _tags(keyword_registry, 3)
    assert tags["decision"] == "refused" and float(tags["p_value"]) >= 0.05


@pytest.mark.slow
def test_min_delta_refuses_a_significant_but_small_improvement(keyword_registry, capsys):
    _set_aliases(keyword_registry, champion=1)
    assert _promote(keyword_registry, "--candidate", "2", "--min-delta", "0.95") == 1
    assert "below min-delta 0.95" in capsys.readouterr().out
    assert _alias(keyword_registry, "champion") == "1"
    assert _tags(keyword_registry, 2)["min_delta"] == "0.95"


@pytest.mark.slow
def test_f1_is_gated_by_a_paired_bootstrap_interval(keyword_registry, capsys):
    _set_aliases(keyword_registry, champion=1)
    assert _promote(keyword_registry, "--candidate", "4") == 0
    assert "paired bootstrap" in capsys.readouterr().out
    tags = _tags(keyword_registry, 4)
    assert tags["test"] == "paired bootstrap" and tags["metric"] == "eval_f1"
    assert 0 < float(tags["ci_low"]) <= float(tags["ci_high"])


@pytest.mark.slow
def test_dry_run_changes_nothing(keyword_registry, capsys):
    _set_aliases(keyword_registry, champion=3, previous_champion=None)
    before = _tags(keyword_registry, 1)
    assert _promote(keyword_registry, "--candidate", "1", "--dry-run") == 0
    assert "WOULD REFUSE" in capsys.readouterr().out
    assert _alias(keyword_registry, "champion") == "3" and _alias(keyword_registry, "previous-champion") is None
    assert _tags(keyword_registry, 1) == before


@pytest.mark.slow
def test_force_promotes_records_it_and_rollback_moves_champion_back(keyword_registry, capsys):
    _set_aliases(keyword_registry, champion=2, previous_champion=None)
    assert _promote(keyword_registry, "--candidate", "1", "--force") == 0
    assert "PROMOTED (forced)" in capsys.readouterr().out
    assert _alias(keyword_registry, "champion") == "1" and _alias(keyword_registry, "previous-champion") == "2"
    tags = _tags(keyword_registry, 1)
    assert tags["decision"] == "promoted" and tags["forced"] == "True" and "forced" in tags["reason"]

    assert main(["--tracking-uri", keyword_registry.tracking_uri, "rollback", keyword_registry.name]) == 0
    assert "@champion is v2 again (was v1)" in capsys.readouterr().out
    assert _alias(keyword_registry, "champion") == "2" and _alias(keyword_registry, "previous-champion") is None
    assert "rolled_back" in _tags(keyword_registry, 1)
    # nothing left to roll back to: one line, exit 2
    assert main(["--tracking-uri", keyword_registry.tracking_uri, "rollback", keyword_registry.name]) == 2
    assert "no @previous-champion" in capsys.readouterr().err


@pytest.mark.slow
def test_unknown_model_or_bad_data_is_one_line_and_exit_2(keyword_registry, capsys, tmp_path):
    assert main(["--tracking-uri", keyword_registry.tracking_uri, "promote", "no-such-model"]) == 2
    assert "no registered model of that name" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("text\nonly texts\n")
    _set_aliases(keyword_registry, champion=1)
    assert _promote(keyword_registry, "--candidate", "2", "--data", str(bad)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no label column" in err.strip().splitlines()[-1]
    assert _alias(keyword_registry, "champion") == "1"


@pytest.mark.slow
def test_history_keeps_every_promotion_refusal_and_rollback(keyword_registry, capsys):
    from workbench.stores.registry import read_history

    _set_aliases(keyword_registry, champion=None, previous_champion=None)
    client = tracking_client(keyword_registry.tracking_uri)
    before = len(read_history(client, keyword_registry.name))
    assert _promote(keyword_registry, "--candidate", "1") == 0  # no champion yet
    assert _promote(keyword_registry, "--candidate", "2") == 0  # clearly better than the weak v1
    assert _promote(keyword_registry, "--candidate", "1") == 1  # worse: refused
    assert main(["--tracking-uri", keyword_registry.tracking_uri, "rollback", keyword_registry.name]) == 0
    capsys.readouterr()
    events = read_history(client, keyword_registry.name)[before:]
    assert [(e["action"], e["version"], e["champion_before"], e["champion_after"]) for e in events] == [
        ("promoted", "1", None, "1"),
        ("promoted", "2", "1", "2"),
        ("refused", "1", "2", "2"),
        ("rollback", "1", "2", "1"),
    ]
    assert [e["n"] for e in events] == list(range(before + 1, before + 5)), "numbered, none overwritten"
    v1 = client.get_model_version(keyword_registry.name, "1").description
    v2 = client.get_model_version(keyword_registry.name, "2").description
    assert (
        v1.index("promoted")
        < v1.index("replaced as @champion by v2")
        < v1.index("refused")
        < v1.index("@champion again by rollback")
    )
    assert v2.index("promoted") < v2.index("rolled back")
    assert _tags(keyword_registry, 2)["decision"] == "rolled back"
