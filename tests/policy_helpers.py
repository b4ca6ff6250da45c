"""Adding a policy to the chain for one test, as a new module plus one line in `chain.POLICIES` would."""

from __future__ import annotations

from twistgate import chain
from twistgate.config import sections
from twistgate.policies import Policy


def add_policy(monkeypatch, policy: Policy, *, before: str) -> None:
    """Put `policy` into `chain.POLICIES` just before the policy named `before`, for this test only."""
    names = [p.name for p in chain.POLICIES]
    index = names.index(before)
    monkeypatch.setattr(chain, "POLICIES", chain.POLICIES[:index] + (policy,) + chain.POLICIES[index:])
    sections.route_sections.cache_clear()


def reset_sections() -> None:
    sections.route_sections.cache_clear()
