"""Configs are (nested) dataclasses; any field can be overridden from the command line as
`section.field=value` (e.g. `model.n_layers=6`, `train.lr=3e-4`, `task.ood_n=9,24`).

Values are parsed by the field's declared type, so a typo or a wrong type gives one clear error.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any

from .errors import UserError


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict) -> Any:
    """Rebuild a (nested) dataclass from `to_dict` output; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise UserError(f"unknown config field(s) for {cls.__name__}: {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value)
        elif _origin(tp) is tuple and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _origin(tp: Any) -> Any:
    return typing.get_origin(tp)


def parse_value(text: str, tp: Any, key: str) -> Any:
    """Parse command-line text as type `tp` (int, float, bool, str, tuples, Literal, Optional); `key`
    names the setting in the error message."""
    origin = _origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        non_none = [a for a in args if a is not type(None)]
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        return parse_value(text, non_none[0], key)
    if origin is typing.Literal:
        if text not in args:
            raise UserError(f"{key}: {text!r} is not one of {list(args)}")
        return text
    if origin is tuple:
        parts = [p for p in text.replace(" ", "").split(",") if p]
        elem = args[0] if args else str
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(p, elem, key) for p in parts)
        if len(parts) != len(args):
            raise UserError(f"{key}: expected {len(args)} comma-separated values, got {text!r}")
        return tuple(parse_value(p, a, key) for p, a in zip(parts, args))
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UserError(f"{key}: expected true/false, got {text!r}")
    if tp in (int, float):
        try:
            value = tp(float(text)) if tp is int and "e" in text.lower() else tp(text)
        except (ValueError, OverflowError):
            raise UserError(f"{key}: expected {tp.__name__}, got {text!r}") from None
        if not math.isfinite(value):   # nan/inf: no setting means them, and training would diverge silently
            raise UserError(f"{key}: expected a finite number, got {text!r}")
        return value
    if tp is str:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"{key}: cannot parse {text!r}") from None


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Return a copy of `cfg` with `a.b=value` overrides applied (types checked; a later override
    of the same field wins). Each dataclass touched is rebuilt once, with all of its changes, so a
    config that validates itself on construction never sees a half-applied state."""
    changes: dict = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not of the form section.field=value")
        key, text = item.split("=", 1)
        _record(cfg, key.strip().split("."), text.strip(), key, changes)
    return _rebuild(cfg, changes)


def _record(obj: Any, path: list[str], text: str, key: str, changes: dict) -> None:
    """Parse one override into `changes` (nested {field: value or {subfield: ...}})."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    head = path[0]
    if head not in fields:
        raise UserError(f"unknown config field {key!r}; {type(obj).__name__} has: {sorted(fields)}")
    current = getattr(obj, head)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise UserError(f"unknown config field {key!r}: {head} is not a section")
        _record(current, path[1:], text, key, changes.setdefault(head, {}))
        return
    if dataclasses.is_dataclass(current):
        raise UserError(f"{key!r} is a section; set one of its fields, e.g. {key}.<field>=...")
    changes[head] = parse_value(text, typing.get_type_hints(type(obj))[head], key)


def _rebuild(obj: Any, changes: dict) -> Any:
    if not changes:
        return obj
    return dataclasses.replace(obj, **{name: _rebuild(getattr(obj, name), v) if isinstance(v, dict)
                                       and dataclasses.is_dataclass(getattr(obj, name)) else v
                                       for name, v in changes.items()})


def describe(cls_or_obj: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, current value, docstring comment) rows for --help style listings."""
    obj = cls_or_obj
    rows = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            rows += describe(value, key + ".")
        else:
            rows.append((key, repr(value), f.metadata.get("help", "")))
    return rows
