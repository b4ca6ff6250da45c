"""Tests for the small sections: listeners, limits, trusted_proxies, plugins, demo."""

from ipaddress import ip_network

import pytest

from twistgate.config import (
    DemoConfig,
    LimitsConfig,
    ListenerTLSConfig,
    Location,
    PluginSection,
)
from tests.config_helpers import config_loader

HEAD = 'listeners: [{name: a, endpoint: "tcp:1"}]\n'


load, issues = config_loader("")


# -- listeners -----------------------------------------------------------------


def test_listeners_must_be_a_non_empty_list():
    """At least one listener is needed."""
    assert issues("listeners: []\n") == [(1, "listeners", "must not be empty")]
    assert issues("listeners:\n") == [(1, "listeners", "expected a list, got null")]
    assert issues("listeners: {name: a}\n") == [(1, "listeners", "expected a list, got mapping")]


def test_listener_required_keys():
    """name and endpoint are required, reported at the listener's line."""
    found = issues(
        """
        listeners:
          - name: a
          - endpoint: tcp:2
        """
    )
    assert found == [
        (2, "listeners[0].endpoint", "required key 'endpoint' is missing"),
        (3, "listeners[1].name", "required key 'name' is missing"),
    ]


def test_listener_names_are_unique():
    """A second listener with the same name is reported with the first's line."""
    found = issues(
        """
        listeners:
          - name: a
            endpoint: tcp:1
          - name: a
            endpoint: tcp:2
        """
    )
    assert found == [(4, "listeners[1].name", "duplicate listener name 'a' (first on line 2)")]


@pytest.mark.parametrize(
    "endpoint, problem",
    [
        ("tcpx:80", "unknown endpoint type 'tcpx' (known: tcp, tcp6, ssl, unix"),
        ("tcpx:80", "did you mean 'tcp'?"),
        ("tcp:abc", "the port must be a number from 1 to 65535, got 'abc'"),
        ("tcp:80:bogus=1", "unknown option 'bogus' for tcp (known: interface, backlog)"),
        ("tcp", "tcp needs a port, for example tcp:8080"),
        ("tcp:80800", "port 80800 is outside 1-65535 (0 means any free port)"),
        ("tcp:-1", "port -1 is outside 1-65535"),
        ("tcp:65536", "port 65536 is outside 1-65535"),
        ("tcp:8080:interfac=127.0.0.1", "did you mean 'interface'?"),
        ("8080", "it has no endpoint type; did you mean 'tcp:8080'?"),
        (":8080", "did you mean 'tcp:8080'?"),
        ("127.0.0.1:8080", "did you mean 'tcp:8080:interface=127.0.0.1'?"),
        ("localhost:8080", "did you mean 'tcp:8080:interface=localhost'?"),
        ("TCP:8080", "endpoint types are lower case"),
        ("unix:", "unix needs a socket path"),
        ("tcp:80:backlog=many", "backlog must be a number"),
    ],
)
def test_listener_endpoint_is_parsed_at_load(endpoint, problem):
    """Endpoint strings are parsed by Twisted at load time (without listening)."""
    found = issues(f"listeners:\n  - name: a\n    endpoint: '{endpoint}'\n")
    assert len(found) == 1
    line, path, message = found[0]
    assert (line, path) == (3, "listeners[0].endpoint")
    assert message.startswith(f"invalid Twisted server endpoint '{endpoint}': ")
    assert problem in message


def test_an_unquoted_port_number_suggests_tcp():
    """`endpoint: 8080` is a YAML integer: say what to write instead."""
    assert issues("listeners:\n  - name: a\n    endpoint: 8080\n") == [
        (3, "listeners[0].endpoint", "expected an endpoint string like 'tcp:8080', got integer 8080; did you mean 'tcp:8080'?")
    ]


def test_listener_endpoints_accepted():
    """TCP with options and UNIX endpoints are valid."""
    config = load(
        """
        listeners:
          - {name: a, endpoint: "tcp:8080:interface=127.0.0.1"}
          - {name: b, endpoint: "unix:/tmp/twistgate.sock"}
        """
    )
    assert [(li.name, li.endpoint, li.tls) for li in config.listeners] == [
        ("a", "tcp:8080:interface=127.0.0.1", None),
        ("b", "unix:/tmp/twistgate.sock", None),
    ]


def test_listener_tls_parsed_in_full():
    """The tls block becomes a ListenerTLSConfig, defaulting client_certificate to none."""
    config = load(
        """
        listeners:
          - name: mtls
            endpoint: tcp:8443
            tls:
              certificate: etc/tls/server.crt
              private_key: etc/tls/server.key
              client_ca: etc/tls/ca.crt
              client_certificate: required
          - name: tls
            endpoint: tcp:8444
            tls: {certificate: c.pem, private_key: k.pem}
        """
    )
    assert config.listeners[0].tls == ListenerTLSConfig(
        certificate="etc/tls/server.crt",
        private_key="etc/tls/server.key",
        client_ca="etc/tls/ca.crt",
        client_certificate="required",
    )
    assert config.listeners[1].tls == ListenerTLSConfig(certificate="c.pem", private_key="k.pem")
    assert config.listeners[1].tls.client_certificate == "none"


def test_listener_tls_errors():
    """Missing key files, an unknown mode, and a client mode without client_ca."""
    found = issues(
        """
        listeners:
          - name: a
            endpoint: tcp:1
            tls:
              certificate: c.pem
              client_certificate: optional
          - name: b
            endpoint: tcp:2
            tls: {certificate: c, private_key: k, client_ca: ca, client_certificate: requird}
        """
    )
    assert found == [
        (4, "listeners[0].tls.private_key", "required key 'private_key' is missing"),
        (
            6,
            "listeners[0].tls.client_certificate",
            "client_certificate: optional needs 'client_ca', "
            "the CA bundle that client certificates are checked against",
        ),
        (
            9,
            "listeners[1].tls.client_certificate",
            "unknown value 'requird'; expected one of none, optional, required; did you mean 'required'?",
        ),
    ]


# -- limits ----------------------------------------------------------------------


def test_limits_defaults_when_absent_or_empty():
    """Without a limits section (or with an empty one) the model's defaults apply."""
    assert load(HEAD).limits == LimitsConfig()
    assert load(HEAD + "limits:\n").limits == LimitsConfig()
    assert load(HEAD + "limits: {}\n").limits == LimitsConfig()


def test_limits_every_key():
    """Every limit is read with its unit."""
    config = load(
        HEAD
        + """\
limits:
  max_request_body: 1MiB
  max_header_bytes: 16KiB
  max_headers: 50
  max_request_line: 4096
  header_timeout: 5s
  request_timeout: 1m
  idle_timeout: 2m
  drain_timeout: 500ms
"""
    )
    assert config.limits == LimitsConfig(
        max_request_body=1024 * 1024,
        max_header_bytes=16 * 1024,
        max_headers=50,
        max_request_line=4096,
        header_timeout=5.0,
        request_timeout=60.0,
        idle_timeout=120.0,
        drain_timeout=0.5,
    )


def test_limits_client_timeouts_and_request_buffering():
    """Issue 14 item 2: the contract's names (nginx's); header_timeout stays as the older name, not both."""
    config = load(HEAD + "limits: {client_header_timeout: 3s, client_body_timeout: 7s, request_buffering: true}\n")
    assert (config.limits.header_timeout, config.limits.body_timeout, config.limits.request_buffering) == (3.0, 7.0, True)
    assert load(HEAD + "limits: {header_timeout: 4s}\n").limits.header_timeout == 4.0
    assert LimitsConfig().request_buffering is False and LimitsConfig().body_timeout == 30.0
    found = issues(HEAD + "limits: {client_header_timeout: 3s, header_timeout: 4s, request_buffering: 1, client_body_timeout: 0s}\n")
    messages = {path: message for _, path, message in found}
    assert "older name of 'client_header_timeout'" in messages["limits.header_timeout"]
    assert messages["limits.client_body_timeout"] == "must be longer than zero"
    assert messages["limits.request_buffering"].startswith("expected true or false")


def test_limits_errors():
    """Zero durations and sizes are refused; each issue has its own line."""
    found = issues(
        HEAD
        + """\
limits:
  max_request_body: 0
  header_timeout: 0s
  request_timeout: 60
  max_header_bytes: 64KB
"""
    )
    assert found == [
        (3, "limits.max_request_body", "must be at least 1 byte, got 0"),
        (4, "limits.header_timeout", "must be longer than zero"),
        (5, "limits.request_timeout", "a duration needs a unit: write 60s (or 60ms); units are ms, s, m, h and d"),
        (6, "limits.max_header_bytes", "ambiguous size unit 'KB' in '64KB': write 64KiB (1 KiB = 1024 bytes)"),
    ]


# -- trusted_proxies -------------------------------------------------------------


def test_trusted_proxies():
    """CIDRs and single addresses, v4 and v6; host bits are allowed."""
    config = load(HEAD + "trusted_proxies: [10.0.0.0/8, 192.168.1.7, '::1', 172.16.5.4/12]\n")
    assert config.trusted_proxies == (
        ip_network("10.0.0.0/8"),
        ip_network("192.168.1.7/32"),
        ip_network("::1/128"),
        ip_network("172.16.0.0/12"),
    )


def test_trusted_proxies_errors():
    """A bad address is reported at its own index."""
    found = issues(HEAD + "trusted_proxies:\n  - 10.0.0.0/8\n  - not-an-ip\n")
    assert found == [(4, "trusted_proxies[1]", "expected an IP address or CIDR like 10.0.0.0/8, got 'not-an-ip'")]
    assert issues(HEAD + "trusted_proxies: 10.0.0.0/8\n")[0][2] == "expected a list, got string '10.0.0.0/8'"


# -- plugins -----------------------------------------------------------------------


def test_plugins_top_level():
    """enabled is taken out of the options; the rest become plain values."""
    config = load(
        HEAD
        + """\
plugins:
  maintenance: {enabled: false}
  headers:
    add: {X-A: "1"}
    list: [1, 2.5, true, null, "s"]
  bare:
"""
    )
    assert config.plugins == (
        PluginSection(
            name="maintenance",
            enabled=False,
            options={},
            location=Location(file="gw.yaml", line=3, path="plugins.maintenance"),
        ),
        PluginSection(
            name="headers",
            enabled=True,
            options={"add": {"X-A": "1"}, "list": [1, 2.5, True, None, "s"]},
            location=Location(file="gw.yaml", line=4, path="plugins.headers"),
        ),
        PluginSection(name="bare", location=Location(file="gw.yaml", line=7, path="plugins.bare")),
    )


def test_plugin_errors():
    """enabled must be a boolean, options a mapping, and keys unique."""
    found = issues(
        HEAD
        + """\
plugins:
  a: {enabled: "no"}
  b: [1, 2]
  c: {x: 1, x: 2}
"""
    )
    assert found == [
        (3, "plugins.a.enabled", "expected true or false, got string 'no'"),
        (4, "plugins.b", "expected a mapping, got list"),
        (5, "plugins.c.x", "duplicate key 'x' (first on line 5)"),
    ]


# -- demo --------------------------------------------------------------------------


def test_demo_forms():
    """absent/false -> None, true -> default endpoint, mapping -> its endpoint."""
    assert load(HEAD).demo is None
    assert load(HEAD + "demo: false\n").demo is None
    assert load(HEAD + "demo: true\n").demo == DemoConfig()
    assert load(HEAD + "demo: {}\n").demo == DemoConfig()
    assert load(HEAD + "demo: {endpoint: 'tcp:6001'}\n").demo == DemoConfig(endpoint="tcp:6001")


def test_demo_errors():
    """A bad endpoint or a wrong type is reported."""
    [(line, path, message)] = issues(HEAD + "demo: {endpoint: 'nope:1'}\n")
    assert (line, path) == (2, "demo.endpoint")
    assert message.startswith("invalid Twisted server endpoint 'nope:1': unknown endpoint type 'nope' (known: tcp, tcp6, ssl, unix, ")
    assert issues(HEAD + "demo: 5001\n") == [
        (2, "demo", "expected true, false or a mapping like {endpoint: 'tcp:5001'}, got integer '5001'")
    ]
