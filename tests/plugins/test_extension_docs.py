"""Keep docs/extensions.md honest: every group, method and built-in named; its examples run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict

from twistgate.config import load_text
from twistgate.plugins.extension_points import BALANCERS, BUILTINS, GROUPS, using_extensions
from twistgate.plugins.views import RequestInfo, TargetInfo

DOCS = Path(__file__).resolve().parents[2] / "docs"
HEAD = 'listeners: [{name: p, endpoint: "tcp:0"}]\n'


def text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def blocks(name: str, language: str) -> list:
    return re.findall(rf"```{language}\n(.*?)```", text(name), flags=re.S)


def test_every_group_method_and_built_in_is_named():
    guide = text("extensions.md")
    for group, method in GROUPS.items():
        assert f"`{group}`" in guide and f"`{method}(" in guide
        assert [name for name in BUILTINS[group] if f"`{name}`" not in guide] == []


def test_the_first_extension_works_as_written():
    namespace: Dict[str, Any] = {}
    exec(blocks("extensions.md", "python")[0], namespace)
    yaml = blocks("extensions.md", "yaml")[0]
    with using_extensions({BALANCERS: {"pinned": namespace["PinnedBalancer"]}}):
        config = load_text(HEAD + yaml, "extensions.md", environ={})
    choice = config.upstreams["users"].policies["balance"]
    balancer = choice.extension.factory(dict(choice.options))
    targets = [TargetInfo.from_url(t.url) for t in config.upstreams["users"].targets]
    request = RequestInfo.build(headers={"X-Backend": "10.0.0.6"})
    assert balancer.choose(targets, request).url == "http://10.0.0.6:8080"


def test_the_consul_and_reference_examples_load():
    consul = next(b for b in blocks("extensions.md", "yaml") if "type: consul" in b)
    config = load_text(HEAD + consul, "extensions.md", environ={"CONSUL_TOKEN": "t"})
    assert config.upstreams["users"].policies["targets_from"].source.options["datacenter"] == "dc2"
    reference = next(b for b in blocks("configuration.md", "yaml") if "fleet:" in b)
    config = load_text(HEAD + reference, "configuration.md", environ={})
    assert config.upstreams["fleet"].policies["health_check"].type == "tcp"


def test_the_other_guides_link_here():
    for name in ("resilience.md", "auth.md", "plugins.md", "configuration.md"):
        assert "extensions.md" in text(name), name
