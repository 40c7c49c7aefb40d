"""Reading training YAML files into frozen dataclasses.

Typos in a training config silently fall back to defaults and waste a GPU run, so unknown
keys are errors that name the file, the key and the accepted keys. Values are coerced to
the field's annotated type where that is unambiguous (YAML reads ``1e-3`` as a string,
lists as lists where the dataclass wants tuples).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

__all__ = ["ConfigError", "dataclass_from_dict", "load_yaml_config"]


class ConfigError(ValueError):
    """A training config that cannot be read: unknown key, wrong type, bad file."""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return dataclass_from_dict(tp, value, where=where)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None:
            return None
        non_none = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(value, non_none[0], where) if len(non_none) == 1 else value
    try:
        if tp is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            return float(value)
        if tp is int and isinstance(value, str):
            return int(value)
    except ValueError as e:
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from e
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def dataclass_from_dict(cls: type[T], data: dict[str, Any], *, where: str = "config") -> T:
    """Build ``cls`` from a mapping; nested dataclass fields take nested mappings."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; accepted: {names}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def load_yaml_config(path: Path | str, cls: type[T]) -> T:
    """Read a YAML file into the frozen dataclass ``cls`` (an empty file gives defaults)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    return dataclass_from_dict(cls, data, where=str(path))
