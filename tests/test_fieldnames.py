"""FieldNames: PyPy's looped set operations with a headers dict give what frozenset's give."""

from __future__ import annotations

import platform

import pytest

from twistgate.fieldnames import FieldNames, _LoopedFieldNames
from twistgate.http import HOP_BY_HOP, strip_hop_by_hop

NAMES = frozenset({b"Connection", b"Te", b"Upgrade"})
DICTS = [
    {},
    {b"Host": [b"a"]},
    {b"Host": [b"a"], b"Connection": [b"close"]},
    {b"Te": [b"trailers"], b"Upgrade": [b"h2c"], b"Connection": [b"Upgrade"], b"Accept": [b"*/*"]},
    {b"connection": [b"close"]},  # keys are canonical: another spelling is another name
]


@pytest.mark.parametrize("raw", DICTS)
def test_looped_operations_agree_with_frozenset(raw: dict) -> None:
    looped = _LoopedFieldNames(NAMES)
    assert looped.isdisjoint(raw) is NAMES.isdisjoint(raw)
    assert sorted(looped.intersection(raw)) == sorted(NAMES.intersection(raw))
    assert looped == NAMES and b"Te" in looped


def test_field_names_is_the_looped_set_on_pypy_only() -> None:
    expected = _LoopedFieldNames if platform.python_implementation() == "PyPy" else frozenset
    assert FieldNames is expected
    assert type(HOP_BY_HOP) is expected


def test_strip_hop_by_hop_deletes_every_listed_field_and_keeps_the_rest() -> None:
    raw = {b"TE": [b"trailers"], b"Upgrade": [b"h2c"], b"Connection": [b"Upgrade, X-Mine"], b"X-Mine": [b"1"],
           b"Accept": [b"*/*"]}
    strip_hop_by_hop(raw)
    assert raw == {b"Accept": [b"*/*"]}
