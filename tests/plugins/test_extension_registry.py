"""The registry of the four extension points (twistgate.plugins.extension_points)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest
from twisted.internet.task import Clock

from twistgate.config import ConfigError, load_text
from twistgate.config.model import Location
from twistgate.plugins.extension_points import (
    AUTHENTICATORS,
    BALANCERS,
    BUILTINS,
    DISCOVERY,
    GROUPS,
    HEALTH_CHECKS,
    ExtensionChoice,
    ExtensionContext,
    ExtensionRegistry,
    UnknownExtension,
    current_registry,
    using_extensions,
)

ROOT = Path(__file__).resolve().parents[2]
HEAD = 'listeners: [{name: p, endpoint: "tcp:0"}]\nroutes: [{name: r, path: /*, upstream: u}]\nupstreams:\n  u:\n'


def fake_distribution(path: Path, entry_points: str, module: str = "") -> Path:
    """A dist-info directory on `path` (what pip installs), and optionally its module."""
    info = path / "fake_extensions-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-extensions\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    if module:
        (path / "fake_extensions.py").write_text(textwrap.dedent(module))
    return path


FAKE_MODULE = """
    class Sticky:
        def __init__(self, options):
            self.options = options
        def choose(self, targets, request):
            return targets[0]
    def round_robin(options):
        raise AssertionError("a package cannot replace a built-in")
"""


def test_the_built_ins_of_every_group():
    """Six balancers, http and tcp checks, four authenticator types, dns and consul discovery."""
    assert set(GROUPS) == {BALANCERS, HEALTH_CHECKS, AUTHENTICATORS, DISCOVERY}
    registry = ExtensionRegistry(entry_points=False)
    assert registry.names(BALANCERS) == (
        "consistent_hash", "ip_hash", "least_connections", "least_response_time", "random", "round_robin",
    )  # fmt: skip
    assert registry.names(HEALTH_CHECKS) == ("grpc", "http", "tcp")
    assert registry.names(AUTHENTICATORS) == ("api_key", "basic", "forward", "jwt", "mtls")
    assert registry.names(DISCOVERY) == ("consul", "dns")
    for group, names in BUILTINS.items():
        for name in names:
            extension = registry.lookup(group, name)
            assert extension.builtin and extension.group == group and extension.method == GROUPS[group]


def test_entry_points_are_found_and_built_ins_win(tmp_path, monkeypatch):
    """A package's entry point is offered by name; one named like a built-in never replaces it."""
    fake_distribution(
        tmp_path,
        """
        [twistgate.balancers]
        sticky = fake_extensions:Sticky
        round_robin = fake_extensions:round_robin
        """,
        FAKE_MODULE,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_extensions", raising=False)
    registry = ExtensionRegistry()
    assert "sticky" in registry.names(BALANCERS)
    sticky = registry.lookup(BALANCERS, "sticky")
    assert not sticky.builtin and "fake_extensions:Sticky" in sticky.origin and "fake-extensions 1.0" in sticky.origin
    assert registry.lookup(BALANCERS, "round_robin").builtin
    config = load_text(HEAD + "    targets: [{url: 'http://a'}]\n    balance: sticky\n", environ={})
    assert config.upstreams["u"].balance == "sticky"
    assert config.upstreams["u"].policies["balance"].extension == sticky


def test_unknown_names_list_what_is_available_with_a_hint():
    """Each of the four keys reports the names of its group and the closest one."""
    text = HEAD + textwrap.indent(
        textwrap.dedent(
            """\
            targets_from: {type: consull, url: http://c, service: s}
            balance: least_conection
            health_check: {type: tpc}
            """
        ),
        "    ",
    ) + "auth:\n  corp: {type: jvt}\n"
    with pytest.raises(ConfigError) as info:
        load_text(text, "gw.yaml", environ={})
    found = [(i.location.path, i.message) for i in info.value.issues]
    assert found == [
        ("upstreams.u.targets_from.type", "unknown value 'consull'; expected one of consul, dns; did you mean 'consul'?"),
        (
            "upstreams.u.balance",
            "unknown value 'least_conection'; expected one of consistent_hash, ip_hash, least_connections, "
            "least_response_time, random, round_robin; did you mean 'least_connections'?",
        ),
        ("upstreams.u.health_check.type", "unknown value 'tpc'; expected one of grpc, http, tcp; did you mean 'tcp'?"),
        ("auth.corp.type", "unknown value 'jvt'; expected one of api_key, basic, forward, jwt, mtls; did you mean 'jwt'?"),
    ]


def test_a_package_that_cannot_be_imported_is_a_config_error(tmp_path, monkeypatch):
    """The entry point's import error is reported at the key that names it."""
    fake_distribution(tmp_path, "[twistgate.discovery]\nghost = no_such_module_here:Ghost\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_text(HEAD + "    targets_from: {type: ghost}\n", "gw.yaml", environ={})
    (issue,) = info.value.issues
    assert (issue.location.line, issue.location.path) == (5, "upstreams.u.targets_from.type")
    assert issue.message.startswith("twistgate.discovery 'ghost' cannot be loaded: ModuleNotFoundError")


SCRIPT = '''
import sys
from twistgate.config import load_text
load_text("""
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {u: {targets_from: {type: used}, health_check: {type: tcp}}}
""", environ={})
names = ("fake_used", "fake_unused", "twistgate.upstream.consul", "twistgate.upstream.dns_source")
print(sorted(m for m in names if m in sys.modules))
'''


def test_only_configured_names_are_imported(tmp_path):
    """Loading a config imports the extensions it names, not the others (a fresh interpreter)."""
    fake_distribution(tmp_path, "[twistgate.discovery]\nused = fake_used:Source\nunused = fake_unused:Source\n")
    (tmp_path / "fake_used.py").write_text(
        "class Source:\n    def __init__(self, options): pass\n    def targets(self): return []\n"
    )
    (tmp_path / "fake_unused.py").write_text("raise SystemExit('imported although not configured')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['fake_used']"


def test_factories_get_their_options_and_a_context_if_they_ask():
    """factory(options) as the contract says; factory(options, context=...) when it has that parameter."""
    seen: List[Any] = []

    def plain(options: Dict[str, Any]) -> Any:
        seen.append(("plain", options))
        return type("B", (), {"choose": lambda self, targets, request: targets[0]})()

    def contextual(options: Dict[str, Any], context: ExtensionContext) -> Any:
        seen.append(("contextual", context.name, context.owner))
        return plain(options)

    registry = ExtensionRegistry(extra={BALANCERS: {"plain": plain, "contextual": contextual}})
    context = ExtensionContext(name="x", owner="upstreams.u", clock=Clock())
    registry.lookup(BALANCERS, "plain").create({"a": 1}, context)
    registry.lookup(BALANCERS, "contextual").create({}, context)
    assert seen == [("plain", {"a": 1}), ("contextual", "x", "upstreams.u"), ("plain", {})]


def test_a_factory_failure_or_an_object_without_the_method_is_a_config_error_at_its_place():
    """Building happens per generation (startup, reload): its problems point at the section."""

    def refuses(options: Dict[str, Any]) -> Any:
        raise ValueError("no such cluster")

    def lacks(options: Dict[str, Any]) -> Any:
        return object()

    registry = ExtensionRegistry(extra={DISCOVERY: {"refuses": refuses, "lacks": lacks}})
    where = Location(file="gw.yaml", line=7, path="upstreams.u.targets_from")
    context = ExtensionContext(name="x", owner="upstreams.u", clock=Clock())
    with pytest.raises(ConfigError, match=r"gw.yaml:7: upstreams.u.targets_from: twistgate.discovery 'refuses': ValueError: no such cluster"):
        ExtensionChoice(extension=registry.lookup(DISCOVERY, "refuses"), location=where).create(context)
    with pytest.raises(ConfigError, match="has no targets\\(\\) method"):
        ExtensionChoice(extension=registry.lookup(DISCOVERY, "lacks"), location=where).create(context)


def test_using_extensions_is_scoped():
    """Factories offered for a block of code are gone after it."""

    def mine(options: Dict[str, Any]) -> Any:
        raise AssertionError

    with using_extensions({HEALTH_CHECKS: {"mine": mine}}) as registry:
        assert current_registry() is registry and "mine" in registry.names(HEALTH_CHECKS)
    assert "mine" not in current_registry().names(HEALTH_CHECKS)
    with pytest.raises(UnknownExtension):
        current_registry().lookup(HEALTH_CHECKS, "mine")
    with pytest.raises(ValueError, match="unknown extension group"):
        ExtensionRegistry(extra={"twistgate.nope": {}})


def test_a_reload_with_the_same_extensions_keeps_the_upstream():
    """Equal configurations compare equal (declarations included): the upstream and its state are reused."""
    from twistgate.generation import Generation

    text = HEAD + (
        "    targets_from: {type: consul, url: 'http://c:8500', service: users}\n"
        "    balance: {type: consistent_hash, key: 'header:X-User'}\n"
        "    health_check: {type: tcp, interval: 5s}\n"
    )
    clock = Clock()
    first = Generation(load_text(text, environ={}), clock)
    second = Generation(load_text(text, environ={}), clock, previous=first)
    assert second.upstreams["u"] is first.upstreams["u"]
    changed = Generation(load_text(text.replace("users}", "orders}"), environ={}), clock, previous=second)
    assert changed.upstreams["u"] is not second.upstreams["u"]
