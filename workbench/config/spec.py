"""The typed spec of a study: frozen pydantic models, one per section of a study file.

`StudySpec` is what every other module receives; `study_file` parses YAML into it and
validates it against the real classes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from workbench.config.search_space import ParamSpec, parse_param
from workbench.core.errors import did_you_mean

# Metrics every trial computes (the Trainer's own names, prefixed `eval_`); eval_f1/precision/recall on
# two classes are those of `data.positive_label`. Per class, by label name: these prefixes + the label.
METRICS = (
    "eval_loss",
    "eval_accuracy",
    "eval_f1",
    "eval_precision",
    "eval_recall",
    "eval_f1_macro",
    "eval_f1_weighted",
)
PER_CLASS_METRICS = ("eval_f1_", "eval_recall_")
# What a trained model costs, measured on every trial (workbench.trial.costs): objectives and constraints may name them.
COST_METRICS = ("params", "trainable_params", "size_mb", "latency_ms", "train_seconds")

SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
    "qmc": "QMCSampler",
    "grid": "GridSampler",
    "nsga2": "NSGAIISampler",
}
MULTI_OBJECTIVE_SAMPLERS = ("tpe", "nsga2", "gp", "random", "qmc", "grid")
PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
    "wilcoxon": "WilcoxonPruner",
    "none": "NopPruner",
}
PATIENCE = ("patience", "min_delta")  # pruner keys of Optuna's PatientPruner, which wraps the pruner of `type`


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplerSpec(_Frozen):
    """`type` picks the Optuna sampler; every other key is passed to its constructor."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str = "tpe"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PrunerSpec(SamplerSpec):
    """`type` picks the Optuna pruner; every other key is passed to its constructor, but `patience` and
    `min_delta`: with them, Optuna's PatientPruner wraps that pruner (it prunes only after `patience`
    evaluations without an improvement of `min_delta`; `type: none` with a patience is patience alone)."""

    type: str = "median"
    patience: int | None = Field(default=None, ge=0)
    min_delta: float = Field(default=0.0, ge=0.0)

    @property
    def logged(self) -> dict[str, Any]:
        """Every key the study file gave, as the parent run's `pruner.*` params."""
        patience = {"patience": self.patience, "min_delta": self.min_delta} if self.patience is not None else {}
        return {**self.options, **patience}


# A study file without `pruner:` gets this one: of the candidates benchmarks/pruning.py compares at full
# size, the cheapest that still reached the unpruned study's best at every seed (BENCHMARKS.md, issue 22)
DEFAULT_PRUNER: dict[str, Any] = {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 1, "patience": 1}


class WarmStartSpec(_Frozen):
    """A new study's first trials: the `top_k` best parameter sets of each earlier study in `from` (same storage)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )
    from_: tuple[str, ...] = Field(alias="from", min_length=1)  # study names, in the Optuna storage of this study
    top_k: int = Field(default=3, ge=1)  # parameter sets per earlier study, best first

    @field_validator("from_", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, str) else value  # `from: demo` means `from: [demo]`


class ObjectiveSpec(_Frozen):
    """One objective of a study: a metric a trial computes (eval_*) or measures (a cost), and its direction."""

    metric: str
    direction: Literal["maximize", "minimize"]


class BoundSpec(_Frozen):
    """`{max: 20}`, `{min: 0.8}` or both: the range a metric must fall in (inclusive)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> BoundSpec:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both (e.g. {max: 20})")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    def excess(self, value: float) -> float:
        """How far `value` lies outside the bounds (0 inside): Optuna's constraint value, feasible when <= 0."""
        below = self.min - value if self.min is not None else 0.0
        above = value - self.max if self.max is not None else 0.0
        return max(below, above, 0.0)


class StudySection(_Frozen):
    name: str = Field(min_length=1)
    metric: str = "eval_loss"  # with `objectives`: the first objective's (training follows it)
    direction: Literal["maximize", "minimize"] = "minimize"
    objectives: list[ObjectiveSpec] | None = None  # several objectives instead of metric/direction
    constraints: dict[str, BoundSpec] = {}  # metric -> bounds; a trial outside them is infeasible
    n_trials: int = Field(default=10, ge=0)
    timeout: float | None = Field(
        default=None, gt=0
    )  # seconds; no new trial starts after it (resume counts time spent)
    stop_at: float | None = None  # a value of `metric`: no new trial starts once the best trial reaches it
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec(**DEFAULT_PRUNER)
    warm_start: WarmStartSpec | None = None  # enqueue earlier studies' best trials first

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("objectives") is not None and ({"metric", "direction"} & set(data)):
            raise ValueError("give study.objectives or study.metric/direction, not both")
        return data

    @model_validator(mode="after")
    def _first_objective_leads(self) -> StudySection:
        if self.objectives:  # early stopping, the best checkpoint and pruning follow the first objective
            object.__setattr__(self, "metric", self.objectives[0].metric)
            object.__setattr__(self, "direction", self.objectives[0].direction)
        if self.stop_at is not None and self.multi_objective:
            raise ValueError("stop_at is a value of one metric: with several objectives no one trial is best")
        return self

    def reached(self, value: float) -> bool:
        """Whether a trial's `value` of `metric` is as good as `stop_at`, in `direction`."""
        if self.stop_at is None:
            return False
        return value >= self.stop_at if self.direction == "maximize" else value <= self.stop_at

    @model_serializer(mode="wrap")
    def _dump_one_form(self, handler):
        out = handler(self)
        if self.objectives:  # metric/direction were derived: re-validating the dump must not see both forms
            out.pop("metric", None)
            out.pop("direction", None)
        return out

    @property
    def goals(self) -> list[ObjectiveSpec]:
        """The objectives, in order: `objectives`, or the one `metric`/`direction`."""
        return list(self.objectives or [ObjectiveSpec(metric=self.metric, direction=self.direction)])

    @property
    def multi_objective(self) -> bool:
        return len(self.goals) > 1


class SyntheticSpec(_Frozen):
    n_examples: int = Field(default=2000, ge=20)  # train + validation (+ test, with data.test_fraction)
    label_noise: float = Field(default=0.05, ge=0.0, lt=0.5)  # fraction of flipped labels
    seed: int = 0


class HubSpec(_Frozen):
    path: str
    name: str | None = None  # the dataset's config, e.g. "sst2" for glue
    revision: str | None = None


FILE_SPLITS = ("train", "validation", "test")  # the keys of data.files


class DataSpec(_Frozen):
    source: Literal["synthetic", "files", "hub", "python"] = (
        "synthetic"  # python: given to workbench.run_study(data=...)
    )
    synthetic: SyntheticSpec = SyntheticSpec()
    files: dict[str, str] = {}  # split name ("train", "validation", "test") -> path, relative to the study file
    hub: HubSpec | None = None
    text_column: str = "text"
    label_column: str = "label"
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)  # when no validation split is given
    # held out of the search, split off train (stratified, seeded) before validation; scores registered versions
    test_fraction: float | None = Field(default=None, gt=0.0, lt=1.0)
    max_train_examples: int | None = Field(default=None, ge=2)  # a seeded, stratified subset of train (small machines)
    max_length: int = Field(default=128, ge=8)  # tokens; longer texts are truncated
    pad_to_multiple_of: int | None = Field(
        default=None, ge=1
    )  # batches pad to their longest text, rounded up (8: GPU tensor cores)
    seed: int = 0
    # the label binary eval_f1/precision/recall are of; default "positive" for synthetic data, 1 for labels 0/1
    positive_label: str | None = None

    @field_validator("positive_label", mode="before")
    @classmethod
    def _as_text(cls, value):
        return None if value is None else str(value)  # labels are known by their names, "1" for 1

    @model_validator(mode="after")
    def _source_has_details(self) -> DataSpec:
        if self.source == "files" and "train" not in self.files:
            raise ValueError("source: files needs files.train (and optionally files.validation)")
        if self.source == "hub" and self.hub is None:
            raise ValueError("source: hub needs hub.path (e.g. {path: glue, name: sst2})")
        unknown = sorted(set(self.files) - set(FILE_SPLITS))
        if unknown:
            hint = did_you_mean(unknown[0], FILE_SPLITS)
            raise ValueError(f"files.{unknown[0]}: not a split{hint}: the splits are {', '.join(FILE_SPLITS)}")
        if self.test_fraction is not None and "test" in self.files:
            raise ValueError("test_fraction and files.test both give a test split: choose one")
        return self

    @property
    def hub_dataset(self) -> HubSpec:
        """`hub`, for a spec whose source is hub (validation made sure it is given)."""
        if self.hub is None:
            raise ValueError("data.hub: not given: source: hub needs hub.path (e.g. {path: glue, name: sst2})")
        return self.hub


class TokenizerSpec(_Frozen):
    train: Literal["wordpiece"] | None = "wordpiece"
    vocab_size: int = Field(default=4000, ge=100)
    path: str | None = None  # a local tokenizer directory instead of training one

    @model_validator(mode="after")
    def _one_way(self) -> TokenizerSpec:
        if self.path is not None:
            object.__setattr__(self, "train", None)
        return self


class LossSpec(_Frozen):
    """Class-weighted (and optionally smoothed) cross-entropy instead of the model's own loss."""

    class_weights: Literal["balanced"] | list[float] | None = None  # "balanced": n / (classes * count)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)

    @field_validator("class_weights")
    @classmethod
    def _weights(cls, value):
        if isinstance(value, list) and (len(value) < 2 or min(value) < 0 or max(value) <= 0):
            raise ValueError("give one weight per class, in label order: numbers >= 0, not all 0 (or: balanced)")
        return value

    @property
    def custom(self) -> bool:
        return self.class_weights is not None or self.label_smoothing > 0


class EarlyStoppingSpec(_Frozen):
    patience: int = Field(default=2, ge=1)  # evaluations without improvement
    threshold: float = Field(default=0.0, ge=0.0)


class ChooseSpec(_Frozen):
    """Which Pareto-optimal version becomes @challenger: the best on one metric among those `where` allows."""

    maximize: str | None = None
    minimize: str | None = None
    where: dict[str, BoundSpec] = {}

    @model_validator(mode="after")
    def _one_goal(self) -> ChooseSpec:
        if (self.maximize is None) == (self.minimize is None):
            raise ValueError(
                "give one of maximize or minimize (e.g. {maximize: eval_f1, where: {latency_ms: {max: 20}}})"
            )
        return self

    @property
    def metric(self) -> str:
        return self.maximize or self.minimize or ""


class RegistrySpec(_Frozen):
    model_name: str | None = None  # registered model name; no registration when absent
    choose: ChooseSpec | None = None  # several objectives: which Pareto-optimal version is @challenger


class SelectionSpec(_Frozen):
    """After the search: retrain the `top_k` best configurations with `seeds` further seeds; register by mean."""

    top_k: int = Field(default=1, ge=1)
    seeds: int = Field(default=2, ge=1)


class StudySpec(_Frozen):
    """Everything one study needs, resolved and validated."""

    study: StudySection
    data: DataSpec = DataSpec()
    tokenizer: TokenizerSpec = TokenizerSpec()
    model: dict[str, Any] = {}
    training: dict[str, Any] = {}
    loss: LossSpec = LossSpec()
    early_stopping: EarlyStoppingSpec | None = EarlyStoppingSpec()
    search_space: dict[str, Any] = {}
    registry: RegistrySpec = RegistrySpec()
    selection: SelectionSpec | None = None
    source_dir: str = "."  # directory of the study file; data paths are relative to it

    @property
    def space(self) -> dict[str, ParamSpec]:
        return {k: parse_param(v) for k, v in self.search_space.items()}

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved spec, for logging."""
        return self.model_dump(mode="json", exclude={"source_dir"})
