"""The order of what runs is written in one place (docs/routing.md §8) and matches the code."""

from __future__ import annotations

import re
from pathlib import Path

from twistgate import chain
from twistgate.plugins.ip_allow import IPAllow

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_routing_md_lists_the_policies_in_chain_order():
    section = (DOCS / "routing.md").read_text(encoding="utf-8").split("## 8. What runs, in which order", 1)[1]
    layers = section.split("5. **The route's layers**", 1)[1].split("6. **The route's terminal**", 1)[0]
    names = {policy.name for policy in chain.POLICIES}
    documented = [word for word in re.findall(r"`([a-z_]+)`", layers) if word in names]
    assert documented == [policy.name for policy in chain.POLICIES]


def test_ip_allow_runs_before_the_policies():
    """Network rules first: ip_allow is tryfirst, as the order above says."""
    impl = IPAllow.on_request
    assert getattr(impl, "twistgate_impl")["tryfirst"] is True
