"""The promotion gate: move `champion` only for a candidate that is better, and not by chance.

Both versions predict the same examples. The candidate must beat the champion on the study
metric by at least `min_delta`, and a paired test must call the difference unlikely to be
chance at level `alpha`: McNemar's exact test for accuracy, a paired bootstrap confidence
interval for F1, precision, recall and loss. The decision is written as tags on the
candidate version; the old champion keeps `previous-champion` for `rollback`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workbench.core.errors import PromotionRefused, RegistryError
from workbench.core.keys import PROMOTION_TAG_PREFIX, VERSION_DIRECTION_TAG, VERSION_METRIC_TAG, VERSION_POSITIVE_TAG
from workbench.core.metrics import BINARY, PER_CLASS, label_key
from workbench.lifecycle.evaluation import Scores, score_model
from workbench.stores.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    alias_or_none,
    get_version,
    record_event,
)
from workbench.stores.shipping import recorded_breaches
from workbench.stores.tracking import mlflow_client

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # the same data and models always give the same interval


@dataclass(frozen=True)
class PairedTest:
    """A paired test of candidate vs champion on the same examples."""

    name: str
    significant: bool  # the difference favours the candidate and is unlikely to be chance
    p_value: float | None = None  # McNemar
    ci: tuple[float, float] | None = None  # bootstrap interval of candidate - champion
    detail: str = ""

    def describe(self, alpha: float) -> str:
        if self.ci is None:  # McNemar
            return f"{self.name} ({self.detail}): p = {self.p_value:.3g}, needs p < {alpha:g}"
        low, high = self.ci
        interval = f"{100 * (1 - alpha):g}% CI of the difference [{low:+.4f}, {high:+.4f}]"
        return f"{self.name} ({self.detail}): {interval}, must exclude 0"


def mcnemar_exact(candidate_correct: np.ndarray, champion_correct: np.ndarray, alpha: float) -> PairedTest:
    """McNemar's exact test: only examples the two models disagree on count (two-sided binomial)."""
    from scipy.stats import binomtest

    b = int(np.sum(candidate_correct & ~champion_correct))  # only the candidate is right
    c = int(np.sum(~candidate_correct & champion_correct))  # only the champion is right
    p = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return PairedTest(
        "McNemar exact",
        bool(p < alpha and b > c),
        p_value=float(p),
        detail=f"candidate-only right {b}, champion-only right {c}",
    )


def paired_bootstrap(
    metric: str,
    labels: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    maximize: bool,
    alpha: float,
    names: Sequence[str] | None = None,
    positive: int | None = None,
) -> PairedTest:
    """Percentile bootstrap of (candidate - champion) over resampled examples, both models on each resample.

    `names` are the label names (per-class metrics), `positive` the class id of binary f1/precision/recall.
    """
    from scipy.stats import bootstrap

    def difference(index, axis=-1):
        index = np.atleast_2d(index)
        scores = [_resampled(metric, labels, probs, index, names, positive) for probs in (candidate, champion)]
        return (scores[0] - scores[1]).squeeze()

    result = bootstrap(
        (np.arange(len(labels)),),
        difference,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=1 - alpha,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    significant = low > 0 if maximize else high < 0
    return PairedTest("paired bootstrap", bool(significant), ci=(low, high), detail=f"{BOOTSTRAP_RESAMPLES} resamples")


def _resampled(
    metric: str,
    labels: np.ndarray,
    probabilities: np.ndarray,
    index: np.ndarray,
    names: Sequence[str] | None = None,
    positive: int | None = None,
) -> np.ndarray:
    """`metric` on each row of `index` (resamples x n), as `metrics.classification_metrics` defines it."""
    if metric == "loss":
        picked = probabilities[np.arange(len(labels)), labels]
        return -np.log(np.clip(picked, 1e-12, 1.0))[index].mean(-1)
    y, p = labels[index], probabilities.argmax(-1)[index]
    if metric == "accuracy":
        return (y == p).mean(-1)
    measure, classes, weighted = _definition(
        metric, names or [str(i) for i in range(probabilities.shape[-1])], positive
    )
    values, support = [], []
    for k in classes:
        tp = ((p == k) & (y == k)).sum(-1)
        fp = ((p == k) & (y != k)).sum(-1)
        fn = ((p != k) & (y == k)).sum(-1)
        denominator = {"precision": tp + fp, "recall": tp + fn, "f1": 2 * tp + fp + fn}[measure]
        numerator = 2 * tp if measure == "f1" else tp
        values.append(np.where(denominator > 0, numerator / np.maximum(denominator, 1), 0.0))
        support.append((y == k).sum(-1))
    if weighted:
        return (np.array(values) * support).sum(0) / np.maximum(np.sum(support, axis=0), 1)
    return np.mean(values, axis=0)


def _definition(metric: str, names: Sequence[str], positive: int | None) -> tuple[str, list[int], bool]:
    """(precision/recall/f1, the class ids averaged over, support-weighted?) of a metric name without `eval_`."""
    every = list(range(len(names)))
    if metric in ("f1_macro", "f1_weighted"):
        return "f1", every, metric == "f1_weighted"
    if metric in BINARY:
        if len(names) > 2:
            return metric, every, False
        if positive is None:
            raise RegistryError(
                f"eval_{metric} needs the positive label: "
                f"tag the version {VERSION_POSITIVE_TAG}=LABEL (one of {', '.join(names)})"
            )
        return metric, [positive], False
    for kind in PER_CLASS:
        for i, name in enumerate(names):
            if metric == f"{kind}_{label_key(name)}":
                return kind, [i], False
    raise RegistryError(f"eval_{metric}: not a metric of labels {', '.join(names)}")


@dataclass(frozen=True)
class Decision:
    name: str
    candidate: str  # version numbers
    champion: str | None
    metric: str
    maximize: bool
    candidate_score: float
    champion_score: float | None
    min_delta: float
    alpha: float
    test: PairedTest | None
    promoted: bool
    forced: bool
    dry_run: bool
    reason: str
    n_examples: int
    data_source: str
    data_digest: str

    @property
    def improvement(self) -> float | None:
        """How much better the candidate is, in the metric's units (positive: better)."""
        if self.champion_score is None:
            return None
        delta = self.candidate_score - self.champion_score
        return delta if self.maximize else -delta

    def table(self) -> str:
        head = f"promote {self.name}: candidate v{self.candidate} vs " + (
            f"champion v{self.champion}" if self.champion else "no champion"
        )
        lines = [head, f"  data      {self.data_source}: {self.n_examples} examples, sha256 {self.data_digest[:16]}"]
        lines.append(
            f"  {'metric':<9} {self.metric}: candidate {self.candidate_score:.4f}"
            + (f", champion {self.champion_score:.4f}, improvement {self.improvement:+.4f}" if self.champion else "")
        )
        if self.test:
            lines.append(f"  test      {self.test.describe(self.alpha)}")
        lines.append(f"  rule      improvement >= {self.min_delta:g} and significant at alpha {self.alpha:g}")
        verdict = (
            "WOULD PROMOTE"
            if self.dry_run and self.promoted
            else "WOULD REFUSE"
            if self.dry_run
            else "PROMOTED"
            if self.promoted
            else "REFUSED"
        )
        outcome = (
            " (dry run: nothing changed)"
            if self.dry_run
            else f"; v{self.candidate} is now @{CHAMPION}"
            if self.promoted
            else ""
        )
        lines.append(f"  decision  {verdict}{' (forced)' if self.forced else ''}: {self.reason}{outcome}")
        return "\n".join(lines)

    def tags(self) -> dict[str, str]:
        tags = {
            "decision": "promoted" if self.promoted else "refused",
            "forced": self.forced,
            "reason": self.reason,
            "metric": self.metric,
            "candidate_score": self.candidate_score,
            "champion_version": self.champion or "",
            "champion_score": "" if self.champion_score is None else self.champion_score,
            "min_delta": self.min_delta,
            "alpha": self.alpha,
            "test": self.test.name if self.test else "none (no champion)",
            "data_digest": self.data_digest,
            "data_source": self.data_source,
            "n_examples": self.n_examples,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if self.test and self.test.p_value is not None:
            tags["p_value"] = self.test.p_value
        if self.test and self.test.ci is not None:
            tags["ci_low"], tags["ci_high"] = self.test.ci
        return {PROMOTION_TAG_PREFIX + k: str(v) for k, v in tags.items()}


def promote(
    name: str,
    tracking_uri: str,
    candidate: str = CHALLENGER,
    data: str | None = None,
    min_delta: float = 0.0,
    alpha: float = 0.05,
    dry_run: bool = False,
    force: bool = False,
) -> Decision:
    """Decide on moving `champion` to `candidate` (alias or version); applies it unless `dry_run`."""
    if min_delta < 0 or not 0 < alpha < 1:
        raise RegistryError("--min-delta must be 0 or more and --alpha between 0 and 1")
    client = mlflow_client(tracking_uri)
    cand = get_version(client, name, candidate)
    champ = alias_or_none(client, name, CHAMPION)
    if champ is not None and champ.version == cand.version:
        raise PromotionRefused(f"{name}: version {cand.version} is already @{CHAMPION}: nothing to promote")
    if not force:
        _refuse_broken_constraints(name, cand, champ)
    metric = cand.tags.get(VERSION_METRIC_TAG, "eval_accuracy").removeprefix("eval_")
    maximize = cand.tags.get(VERSION_DIRECTION_TAG, "maximize") == "maximize"
    positive = cand.tags.get(VERSION_POSITIVE_TAG)  # both versions are scored as the candidate's study scored it
    cand_scores, eval_data = score_model(f"models:/{name}/{cand.version}", data, positive=positive)
    if metric not in cand_scores.metrics:
        _definition(metric, cand_scores.names, cand_scores.positive)  # the reason, as a RegistryError
    champ_scores, test = None, None
    if champ is None:
        promoted, reason = True, "no champion yet"
    else:
        champ_scores, _ = score_model(f"models:/{name}/{champ.version}", eval_data=eval_data, positive=positive)
        if champ_scores.names != cand_scores.names:
            raise RegistryError(
                f"{name}: v{cand.version} and v{champ.version} predict different labels; they cannot be compared"
            )
        promoted, reason, test = _gate(metric, cand_scores, champ_scores, maximize, min_delta, alpha)
    if force and not promoted:
        promoted, reason = True, f"forced; the gate said: {reason}"
    decision = Decision(
        name,
        cand.version,
        champ.version if champ else None,
        f"eval_{metric}",
        maximize,
        cand_scores.metrics[metric],
        champ_scores.metrics[metric] if champ_scores else None,
        min_delta,
        alpha,
        test,
        promoted,
        force,
        dry_run,
        reason,
        len(cand_scores.labels),
        eval_data.source,
        eval_data.digest,
    )
    if not dry_run:
        _apply(client, decision)
    return decision


def _refuse_broken_constraints(name: str, cand, champ) -> None:
    """A candidate that breaks a constraint recorded with it (its study's) is refused before it is scored."""
    breaches = recorded_breaches(cand.tags)
    if breaches:
        stays = f"v{champ.version}" if champ is not None else "unset"
        raise PromotionRefused(
            f"{name}: v{cand.version} breaks a constraint recorded with it ({'; '.join(breaches)}); "
            f"@{CHAMPION} stays {stays}"
        )


def _gate(
    metric: str, cand: Scores, champ: Scores, maximize: bool, min_delta: float, alpha: float
) -> tuple[bool, str, PairedTest]:
    """(promoted, reason, test): better by at least `min_delta`, and significant by a paired test."""
    labels = cand.labels
    if metric == "accuracy":
        test = mcnemar_exact(cand.predictions == labels, champ.predictions == labels, alpha)
    else:
        test = paired_bootstrap(
            metric, labels, cand.probabilities, champ.probabilities, maximize, alpha, cand.names, cand.positive
        )
    improvement = cand.metrics[metric] - champ.metrics[metric]
    improvement = improvement if maximize else -improvement
    if improvement <= 0:
        return False, f"not better than the champion (improvement {improvement:+.4f})", test
    if improvement < min_delta:
        return False, f"improvement {improvement:+.4f} is below min-delta {min_delta:g}", test
    if not test.significant:
        return False, "the difference could be chance", test
    return True, "better, and unlikely to be chance", test


def _apply(client, decision: Decision) -> None:
    """Write the decision on the candidate version, move the aliases, append it to the history."""
    name = decision.name
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, decision.candidate, key, value)
    if decision.promoted:
        if decision.champion is not None:
            client.set_registered_model_alias(name, PREVIOUS_CHAMPION, decision.champion)
        client.set_registered_model_alias(name, CHAMPION, decision.candidate)
    action = "forced" if decision.forced else "promoted" if decision.promoted else "refused"
    scores = f"{decision.metric} {decision.candidate_score:.4f}" + (
        f" vs {decision.champion_score:.4f}" if decision.champion_score is not None else ""
    )
    before = f"v{decision.champion}" if decision.champion else "none"
    lines = {str(decision.candidate): f"{action} (@{CHAMPION} {before} before): {decision.reason}; {scores}"}
    if decision.promoted and decision.champion is not None:
        lines[str(decision.champion)] = f"replaced as @{CHAMPION} by v{decision.candidate}; now @{PREVIOUS_CHAMPION}"
    record_event(
        client,
        name,
        {
            "action": action,
            "version": str(decision.candidate),
            "champion_before": _str(decision.champion),
            "champion_after": str(decision.candidate) if decision.promoted else _str(decision.champion),
            "reason": decision.reason,
            "metric": decision.metric,
            "candidate_score": decision.candidate_score,
            "champion_score": decision.champion_score,
            "p_value": decision.test.p_value if decision.test else None,
            "data_digest": decision.data_digest,
        },
        lines,
    )


def rollback(name: str, tracking_uri: str) -> str:
    """Move `champion` back to `previous-champion`; returns a one-line summary."""
    client = mlflow_client(tracking_uri)
    previous = alias_or_none(client, name, PREVIOUS_CHAMPION)
    current = alias_or_none(client, name, CHAMPION)
    if previous is None:
        get_version(client, name, CHAMPION)  # an unknown model or no champion gets its own message
        raise RegistryError(
            f"{name}: no @{PREVIOUS_CHAMPION} to roll back to (it is set when a promotion replaces a champion)"
        )
    client.set_registered_model_alias(name, CHAMPION, previous.version)
    client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
    lines = {str(previous.version): f"@{CHAMPION} again by rollback (was v{current.version if current else 'none'})"}
    if current is not None:
        client.set_model_version_tag(
            name,
            current.version,
            PROMOTION_TAG_PREFIX + "rolled_back",
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        # no longer reads "promoted"
        client.set_model_version_tag(name, current.version, PROMOTION_TAG_PREFIX + "decision", "rolled back")
        lines[str(current.version)] = f"rolled back: @{CHAMPION} returned to v{previous.version}"
    record_event(
        client,
        name,
        {
            "action": "rollback",
            "version": str(previous.version),
            "champion_before": _str(current.version if current else None),
            "champion_after": str(previous.version),
        },
        lines,
    )
    was = f"v{current.version}" if current else "none"
    return f"{name}: @{CHAMPION} is v{previous.version} again (was {was}); promote again to undo"


def _str(version) -> str | None:
    return None if version is None else str(version)
