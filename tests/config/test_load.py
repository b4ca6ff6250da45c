"""Tests for load_file/load_text: a full config, files, error collection, exports."""

import textwrap
from ipaddress import ip_network

import attrs
import pytest

import twistgate.config
from twistgate.config import (
    ConfigError,
    ConfigIssue,
    GatewayConfig,
    LimitsConfig,
    Location,
    load_file,
    load_text,
    model,
)

FULL = textwrap.dedent(
    """\
    listeners:
      - name: public
        endpoint: tcp:${PORT}
      - name: public-tls
        endpoint: tcp:8443
        tls:
          certificate: etc/tls/server.crt
          private_key: etc/tls/server.key
          client_ca: etc/tls/clients-ca.crt
          client_certificate: required

    limits:
      max_request_body: 10MiB
      max_header_bytes: 64KiB
      request_timeout: 60s

    trusted_proxies: [10.0.0.0/8]

    upstreams:
      users:
        targets:
          - url: http://127.0.0.1:5001
            weight: 2
          - url: https://127.0.0.1:5002
        balance: round_robin
        timeouts: {connect: 2s, read: 30s}

    routes:
      - name: users
        path: /api/users/{id}
        methods: [GET, PUT]
        host: api.example.com
        priority: 10
        upstream: users
        strip_prefix: /api
        add_prefix: /v1
        timeout: 10s
        plugins:
          ip_allow: {cidrs: [10.0.0.0/8]}

    plugins:
      maintenance: {enabled: false}

    demo: true
    """
)


def test_full_config_round_trips_into_typed_values():
    """The contract's example (minus pending sections) loads into the expected values."""
    config = load_text(FULL, filename="gw.yaml", environ={"PORT": "8080"})
    assert isinstance(config, GatewayConfig)
    assert config.source is None
    assert [(li.name, li.endpoint) for li in config.listeners] == [
        ("public", "tcp:8080"),
        ("public-tls", "tcp:8443"),
    ]
    assert config.listeners[1].tls.client_certificate == "required"
    assert config.limits == LimitsConfig(
        max_request_body=10 * 1024 * 1024, max_header_bytes=64 * 1024, request_timeout=60.0
    )
    assert config.trusted_proxies == (ip_network("10.0.0.0/8"),)
    users = config.upstreams["users"]
    assert [(t.scheme, t.host, t.port, t.weight) for t in users.targets] == [
        ("http", "127.0.0.1", 5001, 2),
        ("https", "127.0.0.1", 5002, 1),
    ]
    assert (users.timeouts.connect, users.timeouts.read) == (2.0, 30.0)
    route = config.routes[0]
    assert (route.name, route.path, route.upstream, route.methods, route.host, route.priority) == (
        "users",
        "/api/users/{id}",
        "users",
        frozenset({"GET", "PUT"}),
        "api.example.com",
        10,
    )
    assert (route.strip_prefix, route.add_prefix, route.timeout) == ("/api", "/v1", 10.0)
    assert route.location == Location(file="gw.yaml", line=29, path="routes[0]")
    assert route.plugins[0].options == {"cidrs": ["10.0.0.0/8"], "allow": [], "deny": []}  # declared: defaults filled in
    assert [(p.name, p.enabled) for p in config.plugins] == [("maintenance", False)]
    assert config.demo == model.DemoConfig()
    assert config.admin is None


def test_config_is_frozen():
    """Loaded values cannot be changed in place."""
    config = load_text(FULL, environ={"PORT": "8080"})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.listeners = ()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.routes[0].upstream = "other"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.upstreams["users"].targets[0].port = 1
    assert isinstance(config.routes, tuple) and isinstance(config.routes[0].methods, frozenset)


def test_load_file_sets_source_and_filename(tmp_path):
    """load_file records the path as source and as the issues' file."""
    path = tmp_path / "gw.yaml"
    path.write_text(FULL)
    config = load_file(str(path), environ={"PORT": "1"})
    assert config.source == str(path)
    path.write_text(FULL.replace("upstream: users", "upstream: nobody"))
    with pytest.raises(ConfigError) as info:
        load_file(str(path), environ={"PORT": "1"})
    assert info.value.issues[0].location == Location(file=str(path), line=34, path="routes[0].upstream")


def test_load_file_uses_process_environment(tmp_path, monkeypatch):
    """Without environ=, load_file reads os.environ."""
    path = tmp_path / "gw.yaml"
    path.write_text(FULL)
    monkeypatch.setenv("PORT", "7777")
    assert load_file(str(path)).listeners[0].endpoint == "tcp:7777"
    monkeypatch.delenv("PORT")
    with pytest.raises(ConfigError, match="environment variable 'PORT' is not set"):
        load_file(str(path))


def test_load_file_missing(tmp_path):
    """An unreadable file is a ConfigError naming the file."""
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert str(info.value) == f"{path}: cannot read the configuration file: No such file or directory"


def test_every_issue_is_collected_and_sorted_by_line():
    """Several independent mistakes are all reported in one error, in file order."""
    text = textwrap.dedent(
        """\
        listeners:
          - name: a
            endpoint: tcp:${MISSING}
        limits:
          max_request_body: 10MB
        upstreams:
          users:
            targets: [{url: "http://h/path"}]
        routes:
          - name: r
            path: /x/*/y
            upstrem: users
          - name: r2
            path: /
            upstream: usres
        admin: {endpoint: "tcp:9901"}
        """
    )
    with pytest.raises(ConfigError) as info:
        load_text(text, filename="gw.yaml", environ={})
    assert [(i.location.line, i.location.path) for i in info.value.issues] == [
        (3, "listeners[0].endpoint"),
        (5, "limits.max_request_body"),
        (8, "upstreams.users.targets[0].url"),
        (11, "routes[0].path"),
        (12, "routes[0].upstrem"),
        (15, "routes[1].upstream"),
        (16, "admin.token"),
    ]
    assert all(isinstance(i, ConfigIssue) for i in info.value.issues)


def test_error_text_format():
    """str(ConfigError) is one 'file:line: path: message' line per issue."""
    with pytest.raises(ConfigError) as info:
        load_text("listeners: []\nlimits: {max_headers: 0}\n", filename="etc/gw.yaml", environ={})
    assert str(info.value).splitlines() == [
        "etc/gw.yaml:1: listeners: must not be empty",
        "etc/gw.yaml:2: limits.max_headers: must be at least 1, got 0",
    ]
    assert isinstance(info.value, ValueError)


def test_every_contract_key_is_implemented():
    """Each pending key is in the section tables once its feature is built: nothing pending is also parsed."""
    from twistgate.config import _pending, sections

    registered = {
        "gateway": set(sections.gateway_sections()),
        "upstream": set(sections.upstream_sections()),
        "route": set(sections.route_sections()),
    }
    for level, keys in _pending.PENDING_KEYS.items():
        assert keys <= registered[level], (level, keys - registered[level])


def test_a_pending_key_is_refused_as_not_implemented(monkeypatch):
    """The mechanism for contract keys not built yet: refused by name, not as unknown keys."""
    from twistgate.config import _pending

    pending = dict(_pending.PENDING_KEYS, gateway=_pending.PENDING_KEYS["gateway"] | {"future"})
    monkeypatch.setattr(_pending, "PENDING_KEYS", pending)
    monkeypatch.setattr("twistgate.config._load.PENDING_KEYS", pending)
    with pytest.raises(ConfigError) as info:
        load_text('listeners: [{name: a, endpoint: "tcp:1"}]\nfuture: {}\n', filename="gw.yaml", environ={})
    (issue,) = info.value.issues
    assert (issue.location.line, issue.location.path) == (2, "future")
    assert issue.message == "'future' is part of the configuration contract but is not implemented in this version yet"


def test_exports_are_the_model_objects():
    """twistgate.config re-exports the model's names as the same objects, and __all__ is exact."""
    for name in ("GatewayConfig", "ConfigError", "ConfigIssue", "Location", "Rate", "RouteConfig", "PluginSection"):
        assert getattr(twistgate.config, name) is getattr(model, name)
    public_model = {
        name
        for name, value in vars(model).items()
        if not name.startswith("_") and getattr(value, "__module__", "") == model.__name__
    }
    assert public_model <= set(twistgate.config.__all__)
    assert {"load_file", "load_text", "parse_duration", "parse_size", "parse_rate"} <= set(twistgate.config.__all__)
    for name in twistgate.config.__all__:
        assert hasattr(twistgate.config, name)


@pytest.mark.parametrize(
    "section",
    [
        'upstreams: {a: {targets: [{url: "http://u:SECRETPW@h:80"}]}}',
        'upstreams: {a: {targets: [{url: "http://u:SECRETPW@h:99999"}]}}',
        'upstreams: {a: {targets: [{url: "http://SECRETPW@h:80"}]}}',
        'auth: {f: {type: forward, url: "ftp://u:SECRETPW@h/x"}}',
        'upstreams: {a: {targets_from: {type: consul, url: "http://u:SECRETPW@h:99999", service: s}}}',
    ],
)
def test_an_issue_never_repeats_a_password_written_in_a_url(section):
    """Issue 14: secrets never logged; `twistgate check`, reload logs and /admin/reload echoed the URL as written."""
    with pytest.raises(ConfigError) as info:
        load_text('listeners: [{name: p, endpoint: "tcp:0"}]\n' + section + "\n", environ={})
    text = str(info.value)
    assert "SECRETPW" not in text and "***@h" in text, text
