"""Study files: YAML -> frozen, typed `StudySpec`, with every problem reported at once.

Keys under `model:` are `WorkbenchConfig` fields (or, with `model.pretrained`, fields of that
checkpoint's config) and keys under `training:` are `TrainingArguments` fields, passed through
unchanged; both are checked against the real classes. One function, `apply_overrides`, applies
command-line and trial values on top.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from workbench.config.builders import (
    MODEL_KEYS,
    FieldSchema,
    build_model_config,
    build_training_args,
    check_model_adapters,
    model_schema,
    peft_schema,
    training_schema,
)
from workbench.config.goals import check_goals
from workbench.config.search_space import SECTIONS, CategoricalSpec, ParamSpec, grid_of, parse_param
from workbench.config.spec import (
    METRICS,
    PATIENCE,
    PER_CLASS_METRICS,
    PRUNERS,
    SAMPLERS,
    StudySection,
    StudySpec,
    TokenizerSpec,
)
from workbench.core.errors import DataError, StudyFileError, did_you_mean


def load_study_file(path: str | Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and validate a study file; `overrides` are dotted keys (`training.seed`) set on top."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyFileError(str(path), ["file not found: check the path"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise StudyFileError(
            str(path), [f"cannot read the file ({e.__class__.__name__}): save it as UTF-8 text"]
        ) from None
    try:
        raw = yaml.safe_load(text)  # safe: a study file never constructs Python objects
    except yaml.constructor.ConstructorError as e:  # e.g. !!python/object: never built, never run
        tag = str(e.problem).split("tag ")[-1].strip("'").replace("tag:yaml.org,2002:", "!!")
        raise StudyFileError(
            str(path), [f"tag {tag} is not allowed: a study file holds plain YAML data only"]
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise StudyFileError(str(path), [f"not valid YAML{where}: {getattr(e, 'problem', e)}"]) from None
    if not isinstance(raw, dict):
        raise StudyFileError(str(path), ["must be a YAML mapping with a `study:` section (see studies/demo.yaml)"])
    raw = _set_dotted(raw, overrides or {})
    raw["source_dir"] = str(path.resolve().parent)
    return validate_study(raw, str(path))


def validate_study(raw: dict[str, Any], name: str = "<study>", *, exact: bool = False) -> StudySpec:
    """Dict -> StudySpec, or StudyFileError listing every problem with its key and fix.

    `model:` and `training:` values are type-checked field by field and then built into the
    real `WorkbenchConfig` / `TrainingArguments`. With `exact` (a trial's resolved values)
    they are built as they are; otherwise search-space keys take sample values from their
    ranges, and the file is refused only when no sampled combination builds.
    """
    spec = None
    raw = dict(raw)
    schemas, problems = _schemas(raw)
    for section in SECTIONS:  # unknown keys and types, from the raw dict: reported even when other sections fail
        if isinstance(raw.get(section), dict) and section in schemas:
            raw[section], found = _check_values(section, raw[section], schemas[section])
            problems += found
    if PEFT in schemas and isinstance(_mapping(raw.get("model")).get("peft"), dict):  # model.peft: peft's config fields
        peft, found = _check_values(PEFT, raw["model"]["peft"], schemas[PEFT])
        raw["model"], problems = {**raw["model"], "peft": peft}, problems + found
    try:
        spec = StudySpec(**raw)
    except ValidationError as e:
        problems += [_pydantic_problem(err) for err in e.errors()]
    problems += _check_sections(raw, schemas)  # also when pydantic failed: every problem at once
    if spec is not None and not problems:
        problems += _check_buildable(spec, exact)
    if problems or spec is None:  # pydantic refused it: its reasons are among the problems
        raise StudyFileError(name, problems)
    return spec


def apply_overrides(spec: StudySpec, values: dict[str, Any]) -> StudySpec:
    """The one precedence rule: returns a copy of `spec` with dotted keys set (trial params, CLI)."""
    raw = spec.model_dump(mode="python")
    return validate_study(_set_dotted(raw, values), spec.study.name, exact=True)


def _set_dotted(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    raw = dict(raw)
    for key, value in values.items():
        head, *rest = key.split(".")
        if not rest:
            raw[head] = value
            continue
        section = raw.get(head)
        section = dict(section) if isinstance(section, dict) else {}
        raw[head] = _set_dotted(section, {".".join(rest): value})
    return raw


def _pydantic_problem(err: ErrorDetails) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        *parent, leaf = [str(p) for p in err["loc"]]
        known = _known_keys(parent)
        hint = did_you_mean(leaf, known)
        return f"{loc}: unknown key{hint or (' (known: ' + ', '.join(sorted(known)) + ')' if known else '')}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def _known_keys(parent: list[str]) -> list[str]:
    model: type[BaseModel] = StudySpec
    for part in parent:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        ann = next(
            (a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)), ann
        )
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return [f.alias or k for k, f in model.model_fields.items() if k != "source_dir"]  # `from`, not `from_`


def _schemas(raw: dict[str, Any]) -> tuple[dict[str, FieldSchema], list[str]]:
    """The fields `model:` and `training:` may set; a pretrained checkpoint that cannot be had is a problem."""
    schemas, problems = {"training": training_schema()}, []
    model = _mapping(raw.get("model"))
    pretrained = model.get("pretrained")
    if pretrained is not None and not isinstance(pretrained, str):
        return schemas, [f"model.pretrained: {pretrained!r} is not a directory, package:NAME or hub id"]
    try:
        schemas["model"] = model_schema(model, raw.get("source_dir", "."))
    except DataError as e:
        problems.append(str(e))
    if pretrained and raw.get("tokenizer") not in (None, TokenizerSpec().model_dump()):
        problems.append("tokenizer: a pretrained model brings its own tokenizer: remove the tokenizer section")
    searched = any(str(k).startswith(PEFT + ".") for k in _mapping(raw.get("search_space")))
    peft = model.get("peft", {} if searched else None)
    if peft is not None and not isinstance(peft, dict):
        problems.append(
            f"model.peft: {peft!r} is not a mapping: write {{method: lora, r: 8, target_modules: [query, value]}}"
        )
    elif peft is not None:
        try:
            schemas[PEFT] = peft_schema(peft)
        except DataError as e:  # peft not installed, an unknown method
            problems.append(str(e))
    return schemas, problems


def _check_sections(raw: dict[str, Any], schemas: dict[str, FieldSchema]) -> list[str]:
    """Checks that need the real classes: TrainingArguments, the model's config, Optuna."""
    problems: list[str] = []
    for key, param in _mapping(raw.get("search_space")).items():
        section, _, field = str(key).partition(".")
        where = section
        if section == "model" and field.startswith("peft."):  # model.peft.r: a field of peft's config class
            where, field = PEFT, field.removeprefix("peft.")
        schema = schemas.get(where)
        if section not in SECTIONS or not field:
            problems.append(f"search_space.{key}: must start with {' or '.join(s + '.' for s in SECTIONS)}")
        elif schema is not None and field not in schema.fields:
            problems.append(f"search_space.{key}: not a {schema.owner} field{did_you_mean(field, schema.fields)}")
        try:
            parsed = parse_param(param)
        except (ValidationError, ValueError) as e:
            problems.append(f"search_space.{key}: {_first_message(e)}")
            continue
        if schema is not None and field in schema.fields:
            values = parsed.choices if isinstance(parsed, CategoricalSpec) else (parsed.low, parsed.high)
            problems += [f"search_space.{key}: {p}" for v in values if (p := _type_problem(where, field, v, schema)[1])]
    study = _mapping(raw.get("study"))
    metric = study.get("metric", StudySection.model_fields["metric"].default)
    per_class = isinstance(metric, str) and any(metric.startswith(p) and metric != p for p in PER_CLASS_METRICS)
    if (
        isinstance(metric, str) and metric not in METRICS and not per_class
    ):  # per-class names are checked against the data's labels
        choices = ", ".join([*METRICS, *(p + "<label>" for p in PER_CLASS_METRICS)])
        problems.append(
            f"study.metric: {metric!r} is not computed by a trial "
            f"(choose one of {choices}){did_you_mean(metric, list(METRICS))}"
        )
    if _mapping(raw.get("loss")).get("label_smoothing") and _mapping(raw.get("training")).get("label_smoothing_factor"):
        problems.append("loss.label_smoothing: training.label_smoothing_factor is set too: give one of them")
    if _mapping(study.get("sampler")).get("type") == "grid" and not problems:
        try:
            grid_of({k: parse_param(v) for k, v in _mapping(raw.get("search_space")).items()})
        except ValueError as e:
            problems.append(str(e))
    sources = _mapping(study.get("warm_start")).get("from")
    if study.get("name") is not None and study["name"] in (
        sources if isinstance(sources, (list, tuple)) else [sources]
    ):
        problems.append(f"study.warm_start.from: {study['name']!r} is this study itself: name earlier studies")
    if study.get("warm_start") and _mapping(study.get("sampler")).get("type") == "grid":  # it needs every value given
        problems.append("study.warm_start: the grid sampler tries every combination anyway: remove warm_start")
    problems += check_goals(raw)
    problems += _check_optuna_class("study.sampler", study.get("sampler"), "tpe", SAMPLERS, "samplers")
    problems += _check_optuna_class("study.pruner", study.get("pruner"), "median", PRUNERS, "pruners", PATIENCE)
    return problems


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _first_message(e: Exception) -> str:
    if isinstance(e, ValidationError):
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        return f"{loc}: {msg}" if loc and err["type"] != "value_error" else msg
    return str(e)


def _check_optuna_class(
    key: str, raw: Any, default: str, names: dict[str, str], module: str, ours: tuple[str, ...] = ()
) -> list[str]:
    """`type` names an Optuna class; every other key (but `ours`, typed in the spec) must be one of its
    constructor's arguments."""
    options = {k: v for k, v in _mapping(raw).items() if k not in ours}
    kind = options.pop("type", default)
    if kind not in names:
        return [f"{key}.type: unknown {kind!r} (choose one of {', '.join(names)})"]
    import optuna

    cls = getattr(getattr(optuna, module), names[kind])
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "search_space"}
    return [
        f"{key}.{opt}: not an option of optuna.{module}.{cls.__name__}{did_you_mean(opt, sorted(accepted | set(ours)))}"
        for opt in options
        if opt not in accepted
    ]


# Numeric fields that must be positive: TrainingArguments accepts these and fails mid-trial.
POSITIVE = {
    "training": (
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "num_train_epochs",
        "gradient_accumulation_steps",
    ),
    "model": ("hidden_size", "num_layers", "num_heads", "vocab_size", "max_position_embeddings"),
}
PEFT = "model.peft"  # the adapters' section: its keys are checked against peft's config class
MAX_COMBINATIONS = 16  # search-space combinations tried when checking that a study file builds


def _check_values(section: str, values: dict[str, Any], schema: FieldSchema) -> tuple[dict[str, Any], list[str]]:
    """Unknown keys and wrong types under `model:` / `training:`; numbers given as strings are converted."""
    out, problems = dict(values), []
    for key, value in values.items():
        if section == "model" and key in MODEL_KEYS:
            continue
        if key not in schema.fields:
            problems.append(f"{section}.{key}: not a {schema.owner} field{did_you_mean(key, list(schema.fields))}")
            continue
        out[key], problem = _type_problem(section, key, value, schema)
        if problem:
            problems.append(f"{section}.{key}: {problem}")
    return out, problems


def _type_problem(section: str, key: str, value: Any, schema: FieldSchema) -> tuple[Any, str | None]:
    """(value, converted when it was a number written as text, e.g. 1e-3) and the problem, if any."""
    adapter = _field_types(schema).get(key)
    if adapter is None:
        return value, None
    try:
        checked = adapter.validate_python(value, strict=isinstance(value, bool))
    except ValidationError as e:
        return value, f"{value!r} is not valid ({e.errors()[0]['msg'].lower()})"
    if key in POSITIVE.get(section, ()) and isinstance(checked, (int, float)) and checked <= 0:
        return value, f"must be positive (got {value!r})"
    if isinstance(value, str) and type(checked) in (int, float, bool):
        return checked, None  # YAML reads 1e-3 (no dot) as text
    return value, None


def _check_buildable(spec: StudySpec, exact: bool) -> list[str]:
    """Build the real WorkbenchConfig and TrainingArguments, the way a trial will; their errors become problems."""
    import itertools

    builders = {
        "model": lambda s: build_model_config(s),
        PEFT: check_model_adapters,  # target modules that exist in the model, peft's own checks
        "training": lambda s: build_training_args(s, "unused-output-dir"),
    }
    space = {} if exact else spec.space
    problems: list[str] = []
    for name, build in builders.items():
        if name == PEFT and (problems or spec.model.get("peft") is None):
            continue  # a model that does not build has no modules to adapt
        section = name.partition(".")[0]
        keys = [k for k in space if k.startswith(name + ".")]
        options = [_samples(space[k]) for k in keys]
        combos = list(itertools.islice(itertools.product(*options), MAX_COMBINATIONS))
        errors = []
        for combo in combos:
            values = _set_dotted(getattr(spec, section), {k.partition(".")[2]: v for k, v in zip(keys, combo)})
            try:
                build(spec.model_copy(update={section: values}))
                break
            except DataError as e:  # ours: it names the key already
                errors.append(str(e))
            except Exception as e:  # ValueError, TypeError, ZeroDivisionError...: the library's own words
                errors.append(
                    f"{name}: " + " ".join(line.strip() for line in str(e).splitlines() if line.strip())[:300]
                )
        else:
            # the same error for every combination does not depend on the search space
            where = f" (with every search_space value tried for {', '.join(keys)})" if len(set(errors)) > 1 else ""
            problems.append(f"{errors[0] if errors else name + ': cannot be built'}{where}")
    return problems


def _samples(param: ParamSpec) -> list[Any]:
    if isinstance(param, CategoricalSpec):
        return list(param.choices)
    cast = int if param.is_int else float
    return [cast(param.low), cast(param.high)]


def _field_types(schema: FieldSchema) -> dict[str, Any]:
    """Field name -> pydantic TypeAdapter for the declared type (absent when it cannot be checked)."""
    if schema.owner not in _TYPES:
        from pydantic import TypeAdapter

        adapters = {}
        for name, hint in schema.types.items():
            try:
                adapters[name] = TypeAdapter(hint)
            except Exception:  # an arbitrary class pydantic cannot check: left to the real constructor
                pass
        _TYPES[schema.owner] = adapters
    return _TYPES[schema.owner]


_TYPES: dict[str, dict[str, Any]] = {}
