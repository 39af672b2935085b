"""User code a study file names by import path, `module:Name` (e.g. `mymodels:MyModelForSequenceClassification`).

The module may sit next to the study file (that folder is importable) or in an installed
package. `code_paths` says which files must travel with a registered model so that a fresh
machine loads it without the user's checkout.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from workbench.core.errors import DataError, first_line

MODEL_CLASS_FILE = "workbench_model.json"  # beside a saved model of a user's class: which class loads it


def import_object(ref: str, search_dir: str | Path, key: str) -> Any:
    """The object `module:Name` names; `key` (e.g. `model.class`) is named in a DataError when it cannot be had."""
    module_name, sep, name = str(ref).partition(":")
    if not sep or not module_name or not name:
        raise DataError(f"{key}: {ref!r} is not an import path: write it as module:Name (e.g. mymodels:MyModel)")
    folder = str(Path(search_dir).resolve())
    if folder not in sys.path:  # the study file's folder: a module beside it imports
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ModuleNotFoundError, or any error the module raises while importing
        raise DataError(f"{key}: cannot import {module_name!r}: {e.__class__.__name__}: {first_line(e)}") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise DataError(f"{key}: module {module_name!r} has no {name!r}") from None


def object_ref(obj: Any) -> str:
    """`module:Name` of a class or function: the inverse of import_object."""
    return f"{obj.__module__}:{obj.__qualname__}"


def code_paths(obj: Any) -> list[str]:
    """The top-level module file or package folder `obj` comes from, unless it is an installed distribution's."""
    top = sys.modules[obj.__module__.partition(".")[0]]
    origin = getattr(top, "__file__", None)
    if origin is None:
        return []
    path = Path(origin).resolve()
    path = path.parent if path.name == "__init__.py" else path
    if any(part in ("site-packages", "dist-packages") for part in path.parts):
        return []  # pinned as a requirement instead, like any installed package
    return [str(path)]


def write_model_class(model_dir: Path, ref: str) -> None:
    """Record beside a saved model which user class loads it (transformers' Auto classes do not know it)."""
    (Path(model_dir) / MODEL_CLASS_FILE).write_text(json.dumps({"class": ref}) + "\n")


def read_model_class(model_dir: Path) -> str | None:
    path = Path(model_dir) / MODEL_CLASS_FILE
    return json.loads(path.read_text())["class"] if path.is_file() else None
