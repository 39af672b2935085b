"""Typed search-space parameters and `suggest_params(trial, space)`.

A study file names each parameter by a dotted key, `model.<WorkbenchConfig field>` or
`training.<TrainingArguments field>`, and gives either `choices` or a `low`/`high` range.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, model_validator

if TYPE_CHECKING:
    import optuna

SECTIONS = ("model", "training")


class CategoricalSpec(BaseModel):
    """Pick one of `choices` (numbers, strings, booleans or null)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    choices: tuple[bool | int | float | str | None, ...]

    @model_validator(mode="after")
    def _not_empty(self) -> CategoricalSpec:
        if not self.choices:
            raise ValueError("choices is empty: list at least one value")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))


class RangeSpec(BaseModel):
    """A number in [low, high]; integers when both bounds are integers (or `type: int`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = None
    type: str | None = None  # "int" or "float"; inferred from the bounds when absent

    @model_validator(mode="after")
    def _check(self) -> RangeSpec:
        if self.type not in (None, "int", "float"):
            raise ValueError(f"type {self.type!r} is not int or float")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high}): swap them")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined: choose one")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be positive (got {self.step})")
        return self

    @property
    def is_int(self) -> bool:
        if self.type is not None:
            return self.type == "int"
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.is_int:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)


ParamSpec = CategoricalSpec | RangeSpec


def parse_param(raw: Any) -> ParamSpec:
    """One search-space entry (a mapping from the study file) -> its typed spec."""
    if not isinstance(raw, dict):
        raise ValueError("must be a mapping with `choices` or `low`/`high`")
    if "choices" in raw and ("low" in raw or "high" in raw):
        raise ValueError("give either `choices` or `low`/`high`, not both")
    if "choices" in raw:
        return CategoricalSpec(**raw)
    if "low" in raw or "high" in raw:
        return RangeSpec(**raw)
    raise ValueError("needs `choices: [...]` or `low:` and `high:`")


def suggest_params(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Ask the trial for a value of every parameter; returns {dotted key: value}."""
    return {name: spec.suggest(trial, name) for name, spec in space.items()}


def describe_space(space: dict[str, ParamSpec]) -> dict[str, dict]:
    """A plain, comparable description of the space (stored with the Optuna study)."""
    return {
        name: spec.model_dump(mode="json", exclude_none=True) for name, spec in sorted(space.items())
    }  # as stored: JSON


def grid_of(space: dict[str, ParamSpec]) -> dict[str, list]:
    """The search space as Optuna's GridSampler wants it; ranges need a `step`."""
    grid: dict[str, list] = {}
    for name, spec in space.items():
        if isinstance(spec, CategoricalSpec):
            grid[name] = list(spec.choices)
        elif spec.step is not None:
            n = int(round((spec.high - spec.low) / spec.step))
            values = [spec.low + i * spec.step for i in range(n + 1)]
            grid[name] = [int(v) for v in values] if spec.is_int else values
        elif spec.is_int:
            grid[name] = list(range(int(spec.low), int(spec.high) + 1))
        else:
            raise ValueError(f"search_space.{name}: the grid sampler needs `choices` or a `step` for floats")
    return grid
