"""Run state as plain data: JSON for the structure, a flat {name: tensor} map for the arrays
(saved beside it as safetensors). Nothing is executed on the way back: the only objects rebuilt
are numpy arrays and the dataclasses the caller names."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

ARRAY, PAIRS, TUPLE, DATACLASS = "__array__", "__pairs__", "__tuple__", "__dataclass__"
MARKERS = (ARRAY, PAIRS, TUPLE, DATACLASS)


class PlainDataError(ValueError):
    """A value that has no plain form, or a plain form this reader does not accept."""


def to_plain(value: Any, arrays: dict[str, torch.Tensor], where: str = "state") -> Any:
    """`value` as JSON-able data; every numpy array goes into `arrays` under a fresh name, referred
    to by {"__array__": name}. Dicts with other than string keys, tuples and dataclass instances
    are tagged so that `from_plain` gives back the same types."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind in "USV":
            raise PlainDataError(f"{where}: an array of {value.dtype} has no plain form")
        name = str(len(arrays))
        arrays[name] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {ARRAY: name}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value)]
        fields = {name: to_plain(getattr(value, name), arrays, f"{where}.{name}") for name in names}
        return {DATACLASS: type(value).__name__, "fields": fields}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and not any(key in MARKERS for key in value):
            return {key: to_plain(item, arrays, f"{where}.{key}") for key, item in value.items()}
        return {PAIRS: [[to_plain(k, arrays, where), to_plain(v, arrays, f"{where}.{k}")] for k, v in value.items()]}
    if isinstance(value, list):
        return [to_plain(item, arrays, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, tuple):
        return {TUPLE: [to_plain(item, arrays, f"{where}[{i}]") for i, item in enumerate(value)]}
    raise PlainDataError(f"{where}: a {type(value).__name__} has no plain form")


def from_plain(value: Any, arrays: dict[str, torch.Tensor], types: dict[str, type], where: str = "state") -> Any:
    """The inverse of `to_plain`; `types` names the dataclasses that may be rebuilt (any other name
    is refused, as is a reference to an array that is not there)."""
    if isinstance(value, list):
        return [from_plain(item, arrays, types, f"{where}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if ARRAY in value:
        name = value[ARRAY]
        if not isinstance(name, str) or name not in arrays:
            raise PlainDataError(f"{where}: refers to array {name!r}, which the state does not hold")
        return arrays[name].numpy()
    if DATACLASS in value:
        kind = types.get(value[DATACLASS])
        if kind is None or not isinstance(value.get("fields"), dict):
            raise PlainDataError(f"{where}: a {value[DATACLASS]!r} is not something this state may hold")
        names = {f.name for f in dataclasses.fields(kind)}
        fields = value["fields"]
        if set(fields) - names:
            raise PlainDataError(f"{where}: {kind.__name__} has no field {sorted(set(fields) - names)[0]!r}")
        return kind(**{key: from_plain(item, arrays, types, f"{where}.{key}") for key, item in fields.items()})
    if TUPLE in value:
        return tuple(from_plain(item, arrays, types, f"{where}[{i}]") for i, item in enumerate(value[TUPLE]))
    if PAIRS in value:
        return {
            _key(from_plain(k, arrays, types, where), where): from_plain(v, arrays, types, f"{where}.{k}")
            for k, v in value[PAIRS]
        }
    return {key: from_plain(item, arrays, types, f"{where}.{key}") for key, item in value.items()}


def _key(key: Any, where: str) -> Any:
    if isinstance(key, (list, dict)):
        raise PlainDataError(f"{where}: a dict key may not be a {type(key).__name__}")
    return key
