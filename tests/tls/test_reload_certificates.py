"""A reload whose TLS certificate cannot be used is rejected before the swap; the old one keeps serving."""

from __future__ import annotations

import textwrap

import pytest

from twistgate.config import ConfigError
from twistgate.validation import load_checked as load_and_check_listeners


def _config(tmp_path, pki, certificate):
    path = tmp_path / "gw.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            listeners:
              - name: tls
                endpoint: "tcp:0:interface=127.0.0.1"
                tls: {{certificate: {certificate}, private_key: {pki.server.key}}}
            upstreams: {{app: {{targets: [{{url: "http://127.0.0.1:9"}}]}}}}
            routes: [{{name: all, path: "/*", upstream: app}}]
            """
        )
    )
    return str(path)


def test_a_usable_certificate_passes(tmp_path, pki):
    config = load_and_check_listeners(_config(tmp_path, pki, pki.server.certificate))
    assert config.listeners[0].tls is not None


def test_a_certificate_that_does_not_match_its_key_rejects_the_reload(tmp_path, pki):
    with pytest.raises(ConfigError) as error:
        load_and_check_listeners(_config(tmp_path, pki, pki.api.certificate))
    assert "listeners[0].tls" in str(error.value)


def test_a_missing_certificate_rejects_the_reload(tmp_path, pki):
    with pytest.raises(ConfigError) as error:
        load_and_check_listeners(_config(tmp_path, pki, tmp_path / "gone.crt"))
    assert "listeners[0].tls.certificate" in str(error.value)
