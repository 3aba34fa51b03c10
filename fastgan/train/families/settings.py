"""Settings as dataclass fields that carry their help text and their valid range.

TrainConfig's shared fields and each family's settings (a dataclass declared beside the family) are written
with `setting(...)`; the CLI generator and the TOML reader read the metadata, and `check_settings` checks
types and ranges, so a new setting needs no code outside its declaration.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import field


def setting(default, help: str, choices=None, *, at_least=None, above=None, below=None):
    """A dataclass field with its help text, the values it may take and its bounds: at_least (>=), above (>)
    and below (<)."""
    return field(default=default, metadata={"help": help, "choices": choices, "at_least": at_least,
                                            "above": above, "below": below})


def range_text(metadata) -> str:
    """The bounds of a setting in words, for its error message."""
    low = (f">= {metadata['at_least']}" if metadata.get("at_least") is not None else
           f"> {metadata['above']}" if metadata.get("above") is not None else "")
    high = f"< {metadata['below']}" if metadata.get("below") is not None else ""
    if low and high:
        return f"in [{metadata['at_least']}, {metadata['below']})" if metadata.get("at_least") is not None \
            else f"in ({metadata['above']}, {metadata['below']})"
    return low or high


@functools.cache
def field_types(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _check_type(name: str, kind, value, bad):
    """The value converted to its annotated type (int -> float, list -> tuple), or bad(name, why)."""
    if value is None and type(None) in typing.get_args(kind):
        return value  # an optional field switched off
    optional = typing.get_origin(kind) in (typing.Union, types.UnionType)
    base = next(t for t in typing.get_args(kind) if t is not type(None)) if optional else kind
    if base is bool:
        if not isinstance(value, bool):
            bad(name, "must be true or false")
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            bad(name, "must be a whole number")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad(name, "must be a number")
        if not math.isfinite(value):
            bad(name, "must be a finite number")
        return float(value)
    elif base is str:
        if not isinstance(value, str):
            bad(name, "must be a string")
    elif typing.get_origin(base) is tuple:
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            bad(name, "must be a list of whole numbers")
        return tuple(value)
    return value


def check_settings(obj, cls: type, bad) -> None:
    """Each field of dataclass `cls` on `obj` has its annotated type (ints are ints, not bools; floats finite),
    one of its choices and lies within its bounds; bad(name, why) raises otherwise."""
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        value = _check_type(f.name, hints[f.name], getattr(obj, f.name), bad)
        object.__setattr__(obj, f.name, value)
        meta = f.metadata
        if value is None:
            continue
        if meta.get("choices") is not None and value not in meta["choices"]:
            off = " or none" if type(None) in typing.get_args(hints[f.name]) else ""  # an optional field
            bad(f.name, f"must be one of {', '.join(map(str, meta['choices']))}{off}")
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if ((meta.get("at_least") is not None and not v >= meta["at_least"])
                    or (meta.get("above") is not None and not v > meta["above"])
                    or (meta.get("below") is not None and not v < meta["below"])):
                bad(f.name, f"must be {range_text(meta)}")
