"""The operations sections: defaults, errors with file/line/key path, and the admin listener rules."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock

from tests.ops.helpers import yaml
from twistgate.config import ConfigError, load_text
from twistgate.config.endpoints import same_address
from twistgate.generation import Generation

BASE = yaml(
    """
    listeners: [{name: public, endpoint: "tcp:8080"}]
    upstreams: {app: {targets: [{url: "http://app:80"}]}}
    routes: [{name: r, path: "/*", upstream: app}]
    """
)


def errors(text: str) -> str:
    with pytest.raises(ConfigError) as error:
        Generation(load_text(BASE + text, "gw.yaml", environ={"TOKEN": "t"}), MemoryReactorClock())
    return str(error.value)


def test_admin_needs_a_token():
    assert "gw.yaml:5: admin.token: required key 'token' is missing" in errors('admin: {endpoint: "tcp:9901"}\n')


def test_admin_token_from_the_environment_is_never_in_repr():
    config = load_text(BASE + "admin: {endpoint: tcp:9901, token: '${TOKEN}'}\n", environ={"TOKEN": "very-secret"})
    admin = config.sections["admin"]
    assert admin.token == "very-secret" and "very-secret" not in repr(config)


@pytest.mark.parametrize("endpoint", ["tcp:8080", "tcp:8080:interface=127.0.0.1", "tcp:port=8080"])
def test_admin_on_a_public_listener_is_refused(endpoint):
    text = errors(f"admin: {{endpoint: '{endpoint}', token: x}}\n")
    assert "gw.yaml:5: admin" in text and "must never be on a public listener" in text


def test_same_address():
    assert not same_address("tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1")  # port 0: ephemeral, never a clash
    assert not same_address("tcp:0:interface=127.0.0.1", "tcp:0")
    assert not same_address("tcp:9901:interface=127.0.0.1", "tcp:9901:interface=127.0.0.2")
    assert same_address("tcp:9901:interface=127.0.0.1", "tcp:9901")
    assert same_address("unix:/tmp/a.sock", "unix:/tmp/a.sock")


def test_tracing_settings():
    config = load_text(BASE + 'tracing: {otlp_endpoint: "http://c:4318", sample_ratio: 0.25, service_name: gw}\n')
    tracing = config.sections["tracing"]
    assert (tracing.otlp_endpoint, tracing.sample_ratio, tracing.service_name) == ("http://c:4318/v1/traces", 0.25, "gw")
    assert "tracing.sample_ratio: expected a number from 0 to 1" in errors("tracing: {sample_ratio: 2}\n")
    assert "credentials in the URL" in errors('tracing: {otlp_endpoint: "http://u:p@c:4318"}\n')
    assert "expected an http:// or https:// URL" in errors("tracing: {otlp_endpoint: c:4318}\n")


def test_reload_settings():
    config = load_text(BASE + "reload: {watch: true, interval: 500ms}\n")
    assert (config.sections["reload"].watch, config.sections["reload"].interval) == (True, 0.5)
    assert "reload.interval: a duration needs a unit" in errors("reload: {interval: 5}\n")


def test_defaults_when_absent():
    generation = Generation(load_text(BASE), MemoryReactorClock())
    assert "admin" not in generation.config.sections and generation.services.access_log is None
    assert generation.services.tracer.exporter is None  # propagation on, export off
