"""The consistent hash ring: even spread, and only a removed target's share moves."""

from collections import Counter

from twistgate.upstream.hashring import HashRing


class T:
    def __init__(self, name, weight=1):
        self.name = name
        self.weight = weight


KEYS = [f"user-{i}".encode() for i in range(20000)]


def owners(ring):
    return {key: ring.lookup(key).name for key in KEYS}


def test_keys_spread_evenly_in_proportion_to_weight():
    ring = HashRing([T("a"), T("b"), T("c", weight=2)], lambda t: t.name)
    counts = Counter(owners(ring).values())
    assert abs(counts["a"] / len(KEYS) - 0.25) < 0.03
    assert abs(counts["b"] / len(KEYS) - 0.25) < 0.03
    assert abs(counts["c"] / len(KEYS) - 0.50) < 0.03


def test_removing_a_target_moves_only_its_share():
    """With 10 targets, removing one moves exactly the keys it owned (about a tenth), no others."""
    targets = [T(f"t{i}") for i in range(10)]
    before = owners(HashRing(targets, lambda t: t.name))
    after = owners(HashRing([t for t in targets if t.name != "t3"], lambda t: t.name))
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(before[key] == "t3" for key in moved)
    assert len(moved) == sum(1 for owner in before.values() if owner == "t3")
    assert 0.07 < len(moved) / len(KEYS) < 0.13


def test_adding_a_target_takes_keys_only_for_itself():
    targets = [T(f"t{i}") for i in range(9)]
    before = owners(HashRing(targets, lambda t: t.name))
    after = owners(HashRing(targets + [T("new")], lambda t: t.name))
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(after[key] == "new" for key in moved)


def test_refused_owners_are_walked_past():
    targets = [T(f"t{i}") for i in range(4)]
    ring = HashRing(targets, lambda t: t.name)
    for key in KEYS[:200]:
        owner = ring.lookup(key)
        other = ring.lookup(key, lambda t: t is not owner)
        assert other is not None and other is not owner
    assert ring.lookup(b"k", lambda t: False) is None
    assert HashRing([], lambda t: t.name).lookup(b"k") is None
