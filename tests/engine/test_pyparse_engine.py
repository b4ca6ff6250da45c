"""
The engine's property tests on the pure-Python parser (tests/engine/conftest.py
runs every other engine test on both parsers): whatever framing a first
request tries, split anywhere, nothing hidden in it becomes a request.
"""

from __future__ import annotations

from typing import List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine import test_engine_desync as desync
from tests.engine.parser_choice import use_parser
from tests.framing_strategies import first_requests
from twistgate.engine import head, pyparse


@settings(max_examples=desync.EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=first_requests(path=b"/first").map(lambda made: made[0]), cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=4))
def test_random_framing_never_desynchronises_the_next_request_on_pyparse(first: bytes, cuts: List[int]) -> None:
    with use_parser("python"):
        assert head.HttpRequestParser is pyparse.HttpRequestParser
        desync.test_random_framing_never_desynchronises_the_next_request.hypothesis.inner_test(first, cuts)  # type: ignore[attr-defined]
