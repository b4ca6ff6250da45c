"""
The example extension package (examples/twistgate-example-extensions) and
a misbehaving one, installed with ``pip install --target`` (never into this
environment) and found through their entry points: all four extension
points end to end in a whole gateway (`GatewayHarness`, in memory), and
the isolation of each when it raises, hangs or answers wrongly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
from twisted.logger import capturedLogs
from twisted.web.resource import Resource

from twistgate.config import ConfigError, load_text
from twistgate.plugins.extension_points import AUTHENTICATORS, BALANCERS, DISCOVERY, HEALTH_CHECKS, ExtensionRegistry
from twistgate.testing import GatewayHarness

TOKEN = "token-for-acme-0001"


class Echo(Resource):
    """Answers with the Host it was sent to: which target got the request."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        return request.getHeader(b"Host") or b"-"


def gateway_yaml(tmp_path: Path, upstream: str, auth: str = "", route_auth: str = "") -> str:
    return f"""
listeners: [{{name: p, endpoint: "tcp:0"}}]
upstreams:
  users:
{upstream}
{auth}
routes:
  - {{name: users, path: /users/*, upstream: users{route_auth}}}
"""


def files(tmp_path: Path, **contents: str) -> Dict[str, Path]:
    found = {}
    for name, text in contents.items():
        path = tmp_path / name
        path.write_text(text)
        found[name] = path
    return found


def started(yaml: str) -> GatewayHarness:
    gw = GatewayHarness(load_text(yaml, "gw.yaml", environ={}), Echo())
    gw.generation.start()
    return gw


def body(gw: GatewayHarness, response: Any) -> bytes:
    return gw.content(response)


def test_the_packages_entry_points_are_offered(on_path):
    registry = ExtensionRegistry()
    assert {"example_pinned", "broken"} <= set(registry.names(BALANCERS))
    assert {"example_drain_file", "broken"} <= set(registry.names(HEALTH_CHECKS))
    assert {"example_tokens", "broken"} <= set(registry.names(AUTHENTICATORS))
    assert {"example_file", "broken", "unimportable", "bad_factory"} <= set(registry.names(DISCOVERY))
    assert "twistgate_example_extensions" not in sys.modules  # nothing imported by listing


def test_all_four_work_end_to_end(on_path, tmp_path):
    """Targets from a file, pinned by a header, drained by a file, behind static tokens with scopes."""
    f = files(tmp_path, targets="http://a.test:8001\n# a comment\nhttp://b.test:8002\n", drained="")
    yaml = gateway_yaml(
        tmp_path,
        f"""    targets_from: {{type: example_file, path: "{f['targets']}", interval: 5s}}
    balance: {{type: example_pinned, header: X-Pin}}
    health_check: {{type: example_drain_file, path: "{f['drained']}", interval: 5s, timeout: 1s, jitter: 0s, unhealthy_threshold: 1}}""",
        f"""auth:
  partners: {{type: example_tokens, tokens: {{"{TOKEN}": acme}}, scopes: {{acme: ["users:read"]}}, forward_consumer: X-Consumer}}""",
        ", auth: {any: [partners], scopes: ['users:read']}",
    )
    gw = started(yaml)
    refused = gw.request("GET", "http://gw.test/users/1")
    assert refused.code == 401 and json.loads(body(gw, refused))["error"] == "unauthorized"
    assert refused.headers.getRawHeaders("WWW-Authenticate") == ['example_tokens realm="twistgate"']
    wrong = gw.request("GET", "http://gw.test/users/1", headers={"Authorization": "Bearer nope"})
    assert wrong.code == 401

    auth = {"Authorization": f"Bearer {TOKEN}"}
    pinned = gw.request("GET", "http://gw.test/users/1", headers={**auth, "X-Pin": "b.test"})
    assert pinned.code == 200 and body(gw, pinned) == b"b.test:8002"
    rotated = {body(gw, gw.request("GET", "http://gw.test/users/1", headers=auth)) for _ in range(4)}
    assert rotated == {b"a.test:8001", b"b.test:8002"}

    f["drained"].write_text("http://b.test:8002\n")  # an operator drains b
    gw.clock.advance(5)
    hosts = {body(gw, gw.request("GET", "http://gw.test/users/1", headers={**auth, "X-Pin": "b.test"})) for _ in range(3)}
    assert hosts == {b"a.test:8001"}

    f["targets"].write_text("http://c.test:8003\n")  # the deploy moved the service
    gw.clock.advance(5)
    assert body(gw, gw.request("GET", "http://gw.test/users/1", headers=auth)) == b"c.test:8003"
    gw.generation.stop()


def test_their_options_are_validated_with_locations(on_path, tmp_path):
    """Each package's declared options: unknown keys with a hint (a misspelt required key once), the declaration's own checks."""
    yaml = gateway_yaml(
        tmp_path,
        "    targets_from: {type: example_file, paht: /x}\n    balance: {type: example_pinned, heder: X}",
        "auth:\n  partners: {type: example_tokens, tokens: {short: acme}}",
    )
    with pytest.raises(ConfigError) as info:
        load_text(yaml, "gw.yaml", environ={})
    found = [(i.location.line, i.location.path, i.message) for i in info.value.issues]
    assert found == [
        (5, "upstreams.users.targets_from.paht", "unknown key 'paht'; did you mean 'path'?"),
        (6, "upstreams.users.balance.heder", "unknown key 'heder'; did you mean 'header'?"),
        (8, "auth.partners", "invalid options: every token must be at least 16 characters long"),
    ]


def test_an_unimportable_package_or_a_refusing_factory_is_a_config_error(on_path, tmp_path):
    with pytest.raises(ConfigError, match="twistgate.discovery 'unimportable' cannot be loaded: ModuleNotFoundError"):
        load_text(gateway_yaml(tmp_path, "    targets_from: {type: unimportable}"), "gw.yaml", environ={})
    config = load_text(gateway_yaml(tmp_path, "    targets_from: {type: bad_factory}"), "gw.yaml", environ={})
    with pytest.raises(ConfigError, match=r"gw.yaml:5: upstreams.users.targets_from: .*'bad_factory': ValueError: this factory refuses"):
        GatewayHarness(config, Echo())


@pytest.mark.parametrize("mode", ["raise", "hang", "wrong"])
def test_a_misbehaving_balancer_answers_503_and_the_gateway_goes_on(on_path, tmp_path, mode):
    f = files(tmp_path, mode="ok\n")
    gw = started(gateway_yaml(tmp_path, f"    targets: [{{url: 'http://a.test:8001'}}]\n    balance: {{type: broken, mode_file: '{f['mode']}'}}"))
    assert gw.request("GET", "http://gw.test/users/1").code == 200
    f["mode"].write_text(mode)
    with capturedLogs() as events:
        d = gw.send("GET", "http://gw.test/users/1")
        gw.clock.advance(1)
        gw.flush()
        response = d.result
    assert response.code == 503 and json.loads(body(gw, response))["error"] == "balancer_error"
    assert any(e.get("extension") == "broken" and e.get("group") == "twistgate.balancers" for e in events)
    f["mode"].write_text("ok")
    assert gw.request("GET", "http://gw.test/users/1").code == 200


@pytest.mark.parametrize("mode", ["raise", "hang", "wrong"])
def test_a_misbehaving_authenticator_answers_503_unless_another_accepts(on_path, tmp_path, mode):
    f = files(tmp_path, mode=mode)
    auth = f"""auth:
  broken: {{type: broken, mode_file: '{f['mode']}'}}
  partners: {{type: example_tokens, tokens: {{"{TOKEN}": acme}}}}"""
    yaml = gateway_yaml(tmp_path, "    targets: [{url: 'http://a.test:8001'}]", auth, ", auth: [broken, partners]")
    gw = started(yaml)
    with capturedLogs() as events:
        d = gw.send("GET", "http://gw.test/users/1")
        gw.clock.advance(5)
        gw.flush()
        response = d.result
        assert response.code == 503 and json.loads(body(gw, response))["error"] == "auth_unavailable"
        d = gw.send("GET", "http://gw.test/users/1", headers={"Authorization": f"Bearer {TOKEN}"})
        gw.clock.advance(5)
        gw.flush()
        assert d.result.code == 200  # the other authenticator of the route accepts
    assert any(e.get("extension") == "broken" and e.get("group") == "twistgate.authenticators" for e in events)


@pytest.mark.parametrize("mode", ["raise", "hang", "wrong"])
def test_a_misbehaving_check_marks_targets_unhealthy(on_path, tmp_path, mode):
    f = files(tmp_path, mode=mode)
    gw = started(
        gateway_yaml(
            tmp_path,
            "    targets: [{url: 'http://a.test:8001'}]\n"
            f"    health_check: {{type: broken, mode_file: '{f['mode']}', interval: 5s, timeout: 1s, jitter: 0s, unhealthy_threshold: 1, healthy_threshold: 1}}",
        )
    )
    with capturedLogs():
        gw.clock.advance(1)
    response = gw.request("GET", "http://gw.test/users/1")
    assert response.code == 503 and json.loads(body(gw, response))["error"] == "no_healthy_upstream"
    f["mode"].write_text("ok")
    gw.clock.advance(5)
    assert gw.request("GET", "http://gw.test/users/1").code == 200
    gw.generation.stop()


@pytest.mark.parametrize("mode", ["raise", "hang", "wrong"])
def test_a_misbehaving_source_leaves_the_targets_unchanged(on_path, tmp_path, mode):
    f = files(tmp_path, mode="ok\nhttp://a.test:8001\n")
    gw = started(gateway_yaml(tmp_path, f"    targets_from: {{type: broken, mode_file: '{f['mode']}', interval: 5s, timeout: 2s}}"))
    assert body(gw, gw.request("GET", "http://gw.test/users/1")) == b"a.test:8001"
    f["mode"].write_text(mode)
    with capturedLogs() as events:
        gw.clock.advance(5)
        gw.clock.advance(2)
    assert body(gw, gw.request("GET", "http://gw.test/users/1")) == b"a.test:8001"
    assert any(e.get("extension") == "broken" and e.get("group") == "twistgate.discovery" for e in events)
    gw.generation.stop()


def test_twistgate_check_validates_package_options(on_path, tmp_path, capsys):
    """The `twistgate check` command (in process, the package on sys.path): file, line and key path."""
    from twistgate.cli import main

    config = tmp_path / "gw.yaml"
    config.write_text(gateway_yaml(tmp_path, "    targets_from: {type: example_file, path: /t, intervl: 5s}"))
    assert main(["check", str(config)]) == 1
    expected = f"{config}:5: upstreams.users.targets_from.intervl: unknown key 'intervl'; did you mean 'interval'?"
    assert expected in capsys.readouterr().err
    config.write_text(gateway_yaml(tmp_path, "    targets_from: {type: example_file, path: /t, interval: 5s}"))
    assert main(["check", str(config)]) == 0


def test_installing_the_packages_leaves_the_checkout_as_it_was(tmp_path):
    """Issue 14: the suite builds from copies; pip building in place left build/ and *.egg-info in the tree."""
    from tests.extension_packages import BROKEN, EXAMPLE, install

    def tree():
        return {str(p): p.stat().st_mtime_ns for source in (EXAMPLE, BROKEN) for p in source.rglob("*")}

    before = tree()
    install(tmp_path / "site")
    assert tree() == before
    assert (tmp_path / "site" / "twistgate_example_extensions.py").exists()
