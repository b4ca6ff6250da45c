from collections import Counter

import pytest

from twistgate.upstream.balancer import RoundRobin


def test_equal_weights_rotate():
    rr = RoundRobin(["a", "b", "c"])
    assert [rr.choose() for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]


def test_weights_interleave_smoothly():
    """3:1 gives a a b a (NGINX's smooth weighted round robin), never a burst of three."""
    rr = RoundRobin(["a", "b"], [3, 1])
    assert [rr.choose() for _ in range(8)] == ["a", "a", "b", "a"] * 2


def test_weights_are_honoured_over_a_cycle():
    rr = RoundRobin(["a", "b", "c"], [5, 2, 1])
    assert Counter(rr.choose() for _ in range(80)) == {"a": 50, "b": 20, "c": 10}


def test_no_targets_is_an_error():
    with pytest.raises(ValueError):
        RoundRobin([])
