"""Seeds before registering: retrain the best configurations with more seeds and ship the best on average.

`select_by_seeds` retrains each of the `selection.top_k` best trials with `selection.seeds`
further seeds (each retrain a nested run of the study, tagged with the trial it re-runs),
ranks the configurations by their mean validation score (the original trial counted as one
seed), and returns the run closest to the winner's mean: a typical seed, not the luckiest.
When the two best configurations are within noise by a paired t-test over the same seeds,
its `note` says so.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.config.spec import StudySpec
from workbench.config.study_file import apply_overrides
from workbench.core.errors import first_line
from workbench.core.keys import (
    CHOSEN_TAG,
    PARENT_RUN_TAG,
    RETRAIN_OF_TAG,
    ROLE_RETRAIN,
    RUN_ID_ATTR,
    RUN_STUDY_TAG,
    RUN_TRIAL_TAG,
    SEED_TAG,
    SELECTION_ATTR,
    SELECTION_NOTE_TAG,
    SELECTION_TAG_PREFIX,
)
from workbench.data.splits import TrialData
from workbench.stores.registry import register_best
from workbench.stores.shipping import version_tags
from workbench.stores.storage import ranked_trials
from workbench.stores.tracking import ROLE_TAG, TrialRun
from workbench.trial.lineage import StudyLineage, log_trial_lineage, study_lineage
from workbench.trial.training import TrialResult, train_trial

logger = logging.getLogger(__name__)

ALPHA = 0.05  # the paired test's level: above it the top two are "within noise"


@dataclass
class SeedRun:
    seed: int
    score: float
    run_id: str | None  # the trial's own run for the original seed
    model_dir: Path
    costs: dict[str, float] = field(default_factory=dict)


@dataclass
class Configuration:
    trial: Any  # the FrozenTrial whose parameters were retrained
    runs: list[SeedRun]

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self.runs]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.scores) if len(self.scores) > 1 else 0.0

    def summary(self) -> dict[str, Any]:
        return {"mean": self.mean, "sd": self.sd, "scores": self.scores, "seeds": [r.seed for r in self.runs]}


@dataclass
class Selection:
    configurations: list[Configuration]  # best mean first
    chosen: SeedRun  # the winner's run closest to its mean
    note: str = ""  # "within noise" line, when the top two cannot be told apart


def closest_to_mean(scores: Sequence[float]) -> int:
    """Index of the score nearest the mean (ties: the earliest)."""
    mean = statistics.fmean(scores)
    return min(range(len(scores)), key=lambda i: (abs(scores[i] - mean), i))


def paired_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided paired t-test p-value of per-seed scores `a` vs `b` (same seeds, same order); 1.0 when the
    differences are all equal to zero, NaN with fewer than two pairs."""
    from scipy.stats import ttest_rel

    if len(a) < 2:
        return math.nan
    diffs = [x - y for x, y in zip(a, b)]
    if all(d == 0 for d in diffs):
        return 1.0
    if len(set(diffs)) == 1:  # a constant, non-zero difference: no spread, as certain as it gets
        return 0.0
    return float(ttest_rel(a, b).pvalue)


def rank_configurations(configurations: list[Configuration], maximize: bool) -> list[Configuration]:
    """Best mean first; ties go to the earlier trial."""
    sign = -1.0 if maximize else 1.0
    return sorted(configurations, key=lambda c: (sign * c.mean, c.trial.number))


def noise_note(first: Configuration, second: Configuration, metric: str) -> str:
    """One line when a paired t-test over the seeds both ran cannot tell the top two apart, else ""."""
    common = [s for s in (r.seed for r in first.runs) if s in {r.seed for r in second.runs}]
    a = [next(r.score for r in first.runs if r.seed == s) for s in common]
    b = [next(r.score for r in second.runs if r.seed == s) for s in common]
    p = paired_p_value(a, b)
    if math.isnan(p) or p < ALPHA:
        return ""
    return (
        f"trials {first.trial.number} and {second.trial.number} are within noise: mean {metric} "
        f"{first.mean:.4f} vs {second.mean:.4f} over {len(common)} seeds, paired t-test p = {p:.2f} (>= {ALPHA:g})"
    )


def select_by_seeds(
    spec: StudySpec, study: Any, data: TrialData, tracking: Any, trial_dir: Callable[[int], Path], workdir: Path
) -> Selection | None:
    """Retrain the top_k trials with more seeds, log what was found; None when no trial completed."""
    selection = spec.selection
    top = ranked_trials(study)[: selection.top_k] if selection else []
    if selection is None or not top:
        return None
    configurations, lineage = [], study_lineage(spec, data)
    for trial in top:
        original = SeedRun(
            _seed_of(spec, trial),
            trial.values[0],
            trial.user_attrs.get(RUN_ID_ATTR),
            trial_dir(trial.number) / "model",
            {},
        )
        runs = [original]
        for offset in range(1, selection.seeds + 1):
            run = _retrain(spec, trial, original.seed + offset, data, tracking, workdir, lineage)
            if run is not None:
                runs.append(run)
        configurations.append(Configuration(trial, runs))
    ranked = rank_configurations(configurations, spec.study.direction == "maximize")
    winner = ranked[0]
    chosen = winner.runs[closest_to_mean(winner.scores)]
    note = noise_note(ranked[0], ranked[1], spec.study.metric) if len(ranked) > 1 else ""
    result = Selection(ranked, chosen, note)
    _log_selection(spec, study, tracking, result)
    return result


def _seed_of(spec: StudySpec, trial: Any) -> int:
    return int(trial.params.get("training.seed", spec.training.get("seed", 42)))  # TrainingArguments' default: 42


def _retrain(
    spec: StudySpec, trial: Any, seed: int, data: TrialData, tracking: Any, workdir: Path, lineage: StudyLineage
) -> SeedRun | None:
    """One more seed of `trial`'s configuration, in its own nested run; None (logged) when it fails."""
    import optuna

    params = {**trial.params, "training.seed": seed}
    tags = {
        PARENT_RUN_TAG: tracking.parent_run_id,
        ROLE_TAG: ROLE_RETRAIN,
        RUN_STUDY_TAG: spec.study.name,
        RUN_TRIAL_TAG: str(trial.number),
        RETRAIN_OF_TAG: str(trial.number),
        SEED_TAG: str(seed),
    }
    created = tracking.client.create_run(
        tracking.experiment_id, run_name=f"trial-{trial.number}-seed-{seed}", tags=tags
    )
    run = TrialRun(tracking.client, created.info.run_id)
    folder = workdir / f"selection-{trial.number}-{seed}"
    try:
        trial_spec = apply_overrides(spec, params)
        log_trial_lineage(run, trial_spec, data, lineage)  # `workbench reproduce RUN_ID` retrains it again
        result: TrialResult = train_trial(trial_spec, data, optuna.trial.FixedTrial(trial.params), run, folder)
    except Exception as e:  # one failed seed fails alone: the configuration is judged on the seeds that ran
        logger.warning("selection: trial %d seed %d failed: %s", trial.number, seed, first_line(e))
        run.end("FAIL", note=f"retrain of trial {trial.number} with seed {seed} failed: {first_line(e)}")
        return None
    run.end("COMPLETE", note=f"Retrain of trial {trial.number} with seed {seed} (selection before registering)")
    return SeedRun(seed, result.value, run.run_id, folder / "model", result.costs)


def _log_selection(spec: StudySpec, study: Any, tracking: Any, result: Selection) -> None:
    """Mean, sd and per-seed scores on the parent run (metrics and tags) and the study (for `study show`)."""
    metric = spec.study.metric
    summaries = {str(c.trial.number): c.summary() for c in result.configurations}
    metrics = {}
    for number, s in summaries.items():
        metrics[f"selection.trial_{number}.{metric}_mean"] = s["mean"]
        metrics[f"selection.trial_{number}.{metric}_sd"] = s["sd"]
    tracking.parent.log_metrics(metrics, step=0)
    tags = {f"{SELECTION_TAG_PREFIX}trial_{n}.scores": json.dumps(s["scores"]) for n, s in summaries.items()}
    tags[CHOSEN_TAG] = result.configurations[0].trial.number
    if result.note:
        tags[SELECTION_NOTE_TAG] = result.note
    tracking.parent.set_tags(tags)
    study.set_user_attr(SELECTION_ATTR, summaries)


def selection_tags(result: Selection, metric: str) -> dict[str, Any]:
    """Tags for the registered version: the configuration's mean, sd, per-seed scores and the seed it ships."""
    winner = result.configurations[0]
    return {
        f"{SELECTION_TAG_PREFIX}{metric}_mean": winner.mean,
        f"{SELECTION_TAG_PREFIX}{metric}_sd": winner.sd,
        f"{SELECTION_TAG_PREFIX}scores": json.dumps(winner.scores),
        f"{SELECTION_TAG_PREFIX}seeds": json.dumps([r.seed for r in winner.runs]),
        SEED_TAG: result.chosen.seed,
        CHOSEN_TAG: winner.trial.number,
    }


def register_selected(spec: StudySpec, result: Selection, data: TrialData, tracking: Any) -> str | None:
    """Register the chosen seed run of the winning configuration as @challenger, tagged with mean, sd and scores."""
    import copy

    chosen, trial = result.chosen, copy.deepcopy(result.configurations[0].trial)
    trial.user_attrs = {**trial.user_attrs, **chosen.costs, **({RUN_ID_ATTR: chosen.run_id} if chosen.run_id else {})}
    trial.values = [chosen.score]  # the version's value is the run it ships, not the configuration's best seed
    tags = {**version_tags(spec, trial), **selection_tags(result, spec.study.metric)}
    return register_best(spec, trial, data, tracking, chosen.model_dir.parent, extra_tags=tags)


def selection_lines(result: Selection, metric: str) -> list[str]:
    """What the study prints: each configuration's mean ± sd over its seeds, the run shipped, the noise note."""
    lines = [
        f"  trial {c.trial.number}: {metric} {c.mean:.4f} ± {c.sd:.4f} over {len(c.runs)} seeds "
        f"({', '.join(f'{x:.4f}' for x in c.scores)})"
        for c in result.configurations
    ]
    winner = result.configurations[0]
    lines.append(
        f"selection: trial {winner.trial.number} is best on average; registering its seed {result.chosen.seed} run "
        f"({result.chosen.score:.4f}, the closest to the mean)"
    )
    if result.note:
        lines.append(f"selection: {result.note}")
    return lines


def selection_is_current(study: Any, top_k: int) -> bool:
    """True when the study's `top_k` best trials are those an earlier conclusion retrained (and registered):
    a resumed or re-concluded study with no better trial retrains nothing and registers nothing new."""
    previous = study.user_attrs.get(SELECTION_ATTR) or {}
    return bool(previous) and {str(t.number) for t in ranked_trials(study)[:top_k]} == set(previous)
