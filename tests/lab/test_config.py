"""Overriding config fields from the command line."""
from dataclasses import dataclass, field
from typing import Literal

import pytest

from lab.config import apply_overrides, from_dict, to_dict
from lab.errors import UserError


@dataclass(frozen=True)
class Inner:
    width: int = 8
    rate: float = 0.5
    kind: Literal["a", "b"] = "a"
    span: tuple[int, int] = (1, 2)
    flag: bool = False
    rates: tuple[float, ...] = (0.9,)


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    name: str = "x"


def test_overrides_are_parsed_by_the_field_type():
    cfg = apply_overrides(Outer(), ["inner.width=16", "inner.rate=1e-3", "inner.kind=b", "inner.span=3,9",
                                    "inner.flag=true", "inner.rates=0.5,0.7,0.9", "name=y"])
    assert cfg == Outer(Inner(16, 1e-3, "b", (3, 9), True, (0.5, 0.7, 0.9)), "y")


@pytest.mark.parametrize("override, message", [
    ("inner.widht=3", "unknown config field 'inner.widht'"),
    ("inner.width=wide", "expected int"),
    ("inner.kind=c", "not one of"),
    ("inner.span=1", "expected 2 comma-separated values"),
    ("inner=3", "is a section"),
    ("inner.flag=maybe", "expected true/false"),
    ("width", "section.field=value"),
])
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(Outer(), [override])


def test_round_trip_through_a_dict():
    cfg = apply_overrides(Outer(), ["inner.span=4,5"])
    assert from_dict(Outer, to_dict(cfg)) == cfg
    with pytest.raises(UserError, match="unknown config field"):
        from_dict(Outer, {"nope": 1})
