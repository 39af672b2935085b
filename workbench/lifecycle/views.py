"""Studies at a glance, without a browser: `study list` and `study show` as a table, JSON or CSV.

Read-only: stores are opened without creating a file, a folder or a table, and a missing one
is an error naming where it was looked for. Optuna holds the trials; MLflow holds what became
of them (each trial's run, the registered versions and their aliases).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.config.spec import COST_METRICS
from workbench.core.errors import StoreError, WorkbenchError, first_line
from workbench.core.keys import (
    METRIC_ATTR,
    RUN_ID_ATTR,
    SELECTION_ATTR,
    VERSION_STUDY_TAG,
    VERSION_TRIAL_TAG,
    VERSION_VALUE_TAG,
)
from workbench.lifecycle.server import ServerSpec, build_server_command, run_until_stopped
from workbench.stores.db import mask_url
from workbench.stores.holdout import TEST_PREFIX
from workbench.stores.storage import best_trial, is_feasible, objective_names, open_storage_readonly, pareto_front
from workbench.stores.tracking import mlflow_client, resolve_existing_tracking_uri

FORMATS = ("table", "json", "csv")
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str
    score: float | None  # the value Optuna ranks (COMPLETE), or the best evaluation reached (PRUNED, RUNNING)
    evaluations: int
    duration_s: float | None
    params: dict[str, Any]  # the searched parameters, dotted keys
    run_id: str  # the trial's MLflow run
    best: bool = False
    values: list[float] | None = None  # one per objective (several objectives)
    pareto: bool = False  # on the Pareto front (several objectives)
    feasible: bool | None = None  # met the study's constraints (None: no constraints, or not complete)
    costs: dict[str, float] = field(default_factory=dict)  # workbench.trial.costs
    seeds: dict[str, Any] | None = None  # selection: mean, sd, scores, seeds over the retrains


@dataclass(frozen=True)
class VersionRow:
    model: str
    version: str
    trial: int | None
    aliases: list[str]
    validation: float | None = None  # the study metric on validation, the score it was chosen by
    test: dict[str, float] = field(default_factory=dict)  # test_* scores, taken when registered (none: no test split)


@dataclass(frozen=True)
class StudyView:
    name: str
    direction: str
    metric: str
    best_trial: int | None
    best_value: float | None
    trials: list[TrialRow]
    registry: list[VersionRow] = field(default_factory=list)
    registry_note: str = ""  # why the registry could not be read, if it could not
    objectives: list[str] = field(default_factory=list)  # several objectives: their metrics, in order
    pareto_front: list[int] = field(default_factory=list)  # trial numbers

    def states(self) -> dict[str, int]:
        return _count_states(t.state for t in self.trials)


@dataclass(frozen=True)
class StudySummary:
    name: str
    direction: str
    metric: str
    trials: int
    states: dict[str, int]
    best_trial: int | None
    best_value: float | None
    last_activity: str | None  # ISO time of the latest trial start or end


def list_studies(storage_url: str | None = None) -> list[StudySummary]:
    """Every study in the Optuna store, oldest first."""
    import optuna

    storage = open_storage_readonly(storage_url)
    out = []
    for name in optuna.get_all_study_names(storage):
        study = _load(storage, name)
        trials = study.get_trials(deepcopy=False)
        best = best_trial(study)
        times = [t for trial in trials for t in (trial.datetime_start, trial.datetime_complete) if t is not None]
        out.append(
            StudySummary(
                name,
                _directions(study),
                study.user_attrs.get(METRIC_ATTR, "?"),
                len(trials),
                _count_states(t.state.name for t in trials),
                best.number if best else None,
                best.values[0] if best else None,
                max(times).isoformat(timespec="seconds") if times else None,
            )
        )
    return out


def show_study(name: str, storage_url: str | None = None, tracking_uri: str | None = None) -> StudyView:
    """One study's trials, its best trial, and the registered versions made from it."""
    import optuna

    storage = open_storage_readonly(storage_url)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = (
            f"did you mean {close[0]}?"
            if close
            else "`workbench study list` shows the studies"
            if names
            else "the store holds no study yet"
        )
        raise WorkbenchError(f"study {name!r}: not in the Optuna store ({hint})")
    study = _load(storage, name)
    maximize = study.directions[0].name == "MAXIMIZE"
    best = best_trial(study)
    front = {t.number for t in pareto_front(study)} if len(study.directions) > 1 else set()
    seeds = study.user_attrs.get(SELECTION_ATTR) or {}
    rows = [
        _with_goals(_trial_row(t, maximize, best is not None and t.number == best.number), t, front, seeds)
        for t in study.get_trials(deepcopy=False)
    ]
    try:
        registry, note = _registered_versions(name, tracking_uri), ""
    except WorkbenchError as e:
        registry, note = [], str(e)
    return StudyView(
        name,
        _directions(study),
        study.user_attrs.get(METRIC_ATTR, "?"),
        best.number if best else None,
        best.values[0] if best else None,
        rows,
        registry,
        note,
        objective_names(study) if front else [],
        sorted(front),
    )


def _directions(study) -> str:
    return ", ".join(d.name.lower() for d in study.directions)


def _with_goals(row: TrialRow, trial, front: set[int], seeds: dict) -> TrialRow:
    """The row with what choosing a model reads: objective values, Pareto front, feasibility, costs, seeds."""
    feasible = is_feasible(trial) if trial.constraints and trial.state.name == "COMPLETE" else None
    costs = {k: float(trial.user_attrs[k]) for k in COST_METRICS if k in trial.user_attrs}
    values = list(trial.values) if front and trial.values else None
    return replace(
        row,
        values=values,
        pareto=trial.number in front,
        feasible=feasible,
        costs=costs,
        seeds=seeds.get(str(trial.number)),
    )


def _load(storage, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())


def _trial_row(trial, maximize: bool, is_best: bool) -> TrialRow:
    state = trial.state.name
    steps = trial.intermediate_values
    if state == "COMPLETE":
        score = trial.values[0]
    elif state == "FAIL" or not steps:
        score = None
    else:  # pruned or still running: the best evaluation it reached
        values = [v for v in steps.values() if not math.isnan(v)]
        score = (max if maximize else min)(values) if values else None
    end = trial.datetime_complete or (datetime.now() if state == "RUNNING" else None)
    duration = (end - trial.datetime_start).total_seconds() if end and trial.datetime_start else None
    return TrialRow(
        trial.number,
        state,
        score,
        len(steps),
        duration,
        dict(trial.params),
        trial.user_attrs.get(RUN_ID_ATTR, ""),
        is_best,
    )


def _registered_versions(study: str, tracking_uri: str | None) -> list[VersionRow]:
    """The registered versions whose study tag is `study`, newest first."""
    client = mlflow_client(resolve_existing_tracking_uri(tracking_uri))
    try:
        found = client.search_model_versions(f"tags.`{VERSION_STUDY_TAG}` = '{study}'")
        versions = [client.get_model_version(v.name, v.version) for v in found]  # search results carry no aliases
    except Exception as e:  # MlflowException, connection and SQL errors
        raise StoreError(f"cannot read the model registry: {first_line(e)}") from None
    rows = []
    for v in sorted(versions, key=lambda v: (v.name, -int(v.version))):
        trial = v.tags.get(VERSION_TRIAL_TAG)
        number = int(trial) if trial and trial.isdigit() else None
        rows.append(VersionRow(v.name, str(v.version), number, sorted(v.aliases or []), *_scores(v.tags)))
    return rows


def _scores(tags: dict[str, str]) -> tuple[float | None, dict[str, float]]:
    """(validation score, test scores) from a version's tags."""
    validation = _float(tags.get(VERSION_VALUE_TAG))
    test = {k: v for k, v in ((k, _float(tags[k])) for k in sorted(tags) if k.startswith(TEST_PREFIX)) if v is not None}
    return validation, test


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _count_states(states) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return {s: counts[s] for s in sorted(counts, key=lambda s: STATES.index(s) if s in STATES else len(STATES))}


def run_ui(tracking_uri: str, port: int, on_start=print) -> int:
    """`mlflow ui` on this project's tracking store, bound to 127.0.0.1, in the foreground until Ctrl-C or SIGTERM.

    A tracking server already has its UI: its URL is given instead. Returns the exit code.
    """
    import socket

    if tracking_uri.startswith(("http://", "https://")):
        on_start(f"the tracking server serves its own UI: {mask_url(tracking_uri)}")
        return 0
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise WorkbenchError(
                f"--port {port}: something already listens there (an MLflow UI?): "
                f"open http://127.0.0.1:{port} or pass another --port"
            )
    artifacts = None
    if tracking_uri.startswith(
        "sqlite:///"
    ):  # beside the store, wherever it is (runs name their own artifact folders anyway)
        artifacts = str(Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts")
    command, env = build_server_command(
        ServerSpec(port=port, backend_store_uri=tracking_uri, artifacts_destination=artifacts)
    )
    on_start(f"MLflow UI: http://127.0.0.1:{port}  (store {tracking_uri}; Ctrl-C stops it)")
    return run_until_stopped(command, env)[0]


# ---- rendering -------------------------------------------------------------------------------


def render_list(studies: list[StudySummary], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps([asdict(s) for s in studies], indent=2)
    header = [
        "study",
        "direction",
        "metric",
        "trials",
        *(s.lower() for s in STATES),
        "best_trial",
        "best_value",
        "last_activity",
    ]
    rows = [
        [
            s.name,
            s.direction,
            s.metric,
            s.trials,
            *(s.states.get(state, 0) for state in STATES),
            s.best_trial,
            s.best_value,
            s.last_activity,
        ]
        for s in studies
    ]
    if fmt == "csv":
        return _csv(header, rows)
    if not studies:
        return "no studies yet: `workbench study run STUDY_FILE` starts one"
    table_rows = [
        [
            s.name,
            f"{s.direction} {s.metric}",
            _states_text(s.trials, s.states),
            _best_text(s.best_trial, s.best_value),
            _when(s.last_activity),
        ]
        for s in studies
    ]
    return _grid(["study", "objective", "trials", "best", "last activity"], table_rows)


def render_show(view: StudyView, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(asdict(view), indent=2)
    keys = sorted({k for t in view.trials for k in t.params})
    if fmt == "csv":
        header = ["number", "state", "score", "evaluations", "duration_s", "best", "run_id", *keys]
        return _csv(
            header,
            [
                [
                    t.number,
                    t.state,
                    t.score,
                    t.evaluations,
                    t.duration_s,
                    t.best,
                    t.run_id,
                    *(t.params.get(k) for k in keys),
                ]
                for t in view.trials
            ],
        )
    short = _short_names(keys)
    best = (
        _best_text(view.best_trial, view.best_value) if view.best_trial is not None else "none yet (no complete trial)"
    )
    states = _states_text(len(view.trials), view.states())
    head = f"study {view.name}: {_objective_text(view)}, {states}; best {best}"
    extra, extra_header = _goal_columns(view)
    rows = [
        [
            "*" if t.best else "+" if t.pareto else "",
            t.number,
            t.state,
            _number(t.score),
            *(column(t) for column in extra),
            t.evaluations,
            _duration(t.duration_s),
            *(_number(t.params.get(k)) for k in keys),
            t.run_id,
        ]
        for t in view.trials
    ]
    lines = [
        head,
        "",
        _grid(["", "trial", "state", "score", *extra_header, "evals", "duration", *short, "mlflow run"], rows)
        if rows
        else "  no trials yet",
        "",
    ]
    lines.append(
        "score: the study metric of the best evaluation (pruned trials: the best reached before pruning); "
        "* the best trial" + ("; + on the Pareto front" if view.pareto_front else "")
    )
    lines.extend(_registry_lines(view))
    return "\n".join(lines)


def _objective_text(view: StudyView) -> str:
    """`maximize eval_f1`, or with several objectives `eval_f1 (maximize), latency_ms (minimize)`."""
    if not view.objectives:
        return f"{view.direction} {view.metric}"
    return ", ".join(f"{m} ({d.strip()})" for m, d in zip(view.objectives, view.direction.split(",")))


def _goal_columns(view: StudyView) -> tuple[list[Callable[[TrialRow], str]], list[str]]:
    """Columns for what choosing a model reads: the other objectives, feasibility, mean ± sd over seeds."""
    columns: list[Callable[[TrialRow], str]] = []
    header: list[str] = []
    for i, name in enumerate(view.objectives[1:], start=1):
        columns.append(lambda t, i=i: _number(t.values[i]) if t.values else "-")  # type: ignore[misc]
        header.append(name)
    if any(t.feasible is not None for t in view.trials):
        columns.append(lambda t: "-" if t.feasible is None else "yes" if t.feasible else "NO")
        header.append("feasible")
    if any(t.seeds for t in view.trials):
        columns.append(
            lambda t: f"{t.seeds['mean']:.4f}±{t.seeds['sd']:.4f} ({len(t.seeds['scores'])})" if t.seeds else "-"
        )
        header.append("mean±sd (seeds)")
    return columns, header


def _registry_lines(view: StudyView) -> list[str]:
    if view.registry_note:
        return [f"registry: unknown ({view.registry_note})"]
    if not view.registry:
        return ["registry: no version registered from this study"]
    out = ["registry:"]
    for v in view.registry:
        aliases = " ".join(f"@{a}" for a in v.aliases) or "(no alias)"
        mark = " (the best trial)" if v.trial is not None and v.trial == view.best_trial else ""
        out.append(f"  {v.model} v{v.version} {aliases}  from trial {v.trial}{mark}{_scores_text(v, view.metric)}")
    return out


def _scores_text(v: VersionRow, metric: str) -> str:
    """`: eval_f1 0.7570 on validation, 0.6900 on test`, as far as the version has them."""
    test = v.test.get(TEST_PREFIX + metric.removeprefix("eval_"))
    parts = [f"{_number(v.validation)} on validation"] if v.validation is not None else []
    parts += [f"{_number(test)} on test"] if test is not None else ["no test split"] if parts else []
    return f": {metric} " + ", ".join(parts) if parts else ""


def _states_text(total: int, states: dict[str, int]) -> str:
    parts = ", ".join(f"{n} {s.lower()}" for s, n in states.items())
    return f"{total} trials" + (f" ({parts})" if parts else "")


def _best_text(number: int | None, value: float | None) -> str:
    return "-" if number is None else f"trial {number} ({value:.4f})"


def _when(iso: str | None) -> str:
    return iso.replace("T", " ") if iso else "-"


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3g}"
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _short_names(keys: list[str]) -> list[str]:
    """`training.learning_rate` -> `learning_rate`, unless two keys would read the same."""
    tails = [k.rsplit(".", 1)[-1] for k in keys]
    return [t if tails.count(t) == 1 else k for k, t in zip(keys, tails)]


def _grid(header: list[str], rows: list[list[Any]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[str("" if c is None else c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(_is_number(row[i]) for row in cells[1:]) for i in range(len(header))]
    lines = [
        "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return text == "-"


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if c is None else c for c in row] for row in rows])
    return out.getvalue().rstrip("\n")
