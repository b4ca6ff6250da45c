"""``twistgate keys``: create, list and revoke straight against the store, then a gateway uses them."""

from __future__ import annotations

import json

import pytest

from tests.auth.helpers import NOW, AuthGateway
from twistgate.cli import main


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "gw.yaml"
    path.write_text(
        f"""
listeners: [{{name: p, endpoint: "tcp:0"}}]
upstreams: {{app: {{targets: [{{url: "http://app:80"}}]}}}}
auth:
  keys: {{type: api_key, store: "sqlite:{tmp_path}/var/keys.db"}}
routes:
  - {{name: api, path: "/api/*", upstream: app, auth: [keys]}}
"""
    )
    return path


def run(capsys, *argv):
    code = main(["keys", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_create_prints_only_the_key_on_stdout(config, capsys):
    code, out, err = run(capsys, "create", "--config", str(config), "--consumer", "acme", "--expires-in", "30d")
    assert code == 0
    key = out.strip()
    assert key.startswith("tg_") and "\n" not in key
    assert "not shown again" in err and "acme" in err
    gateway = AuthGateway(config.read_text().split("\n", 3)[3])
    assert gateway.get(headers={"X-API-Key": key}).code == 200


def test_list_and_revoke(config, capsys):
    _, out, _ = run(capsys, "create", "--config", str(config), "--consumer", "acme", "--json")
    created = json.loads(out)
    key_id = created["id"]
    code, out, _ = run(capsys, "list", "--config", str(config))
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["ID", "CONSUMER", "CREATED", "EXPIRES", "STATUS"]
    assert lines[1].split()[0] == key_id and lines[1].split()[-1] == "active"
    assert created["key"] not in out
    code, out, _ = run(capsys, "revoke", "--config", str(config), key_id)
    assert code == 0 and key_id in out
    _, out, _ = run(capsys, "list", "--config", str(config), "--json")
    assert json.loads(out)[0]["revoked_at"] is not None
    gateway = AuthGateway(config.read_text().split("\n", 3)[3])
    gateway.clock.advance(0)
    assert gateway.get(headers={"X-API-Key": created["key"]}).code == 401
    code, _, err = run(capsys, "revoke", "--config", str(config), "0123456789abcdef")
    assert code == 1 and "no key" in err


def test_bad_input(config, capsys, tmp_path):
    code, _, err = run(capsys, "create", "--config", str(config), "--consumer", "acme", "--expires-in", "30")
    assert code == 2 and "--expires-in" in err
    other = tmp_path / "other.yaml"
    other.write_text('listeners: [{name: p, endpoint: "tcp:0"}]\n')
    code, _, err = run(capsys, "list", "--config", str(other))
    assert code == 1 and "no api_key authenticator" in err
    code, _, err = run(capsys, "list", "--config", str(config), "--authenticator", "nope")
    assert code == 2 and "nope" in err


def test_expiry_uses_the_time_given(config, tmp_path):
    import argparse
    import io

    from twistgate.policies.auth.cli import run as run_keys

    out, err = io.StringIO(), io.StringIO()
    args = argparse.Namespace(config=str(config), authenticator=None, action="create", consumer="acme", expires_in="1h", json=True)
    assert run_keys(args, now=lambda: NOW, out=out, err=err) == 0
    assert json.loads(out.getvalue())["expires_at"] == "2023-11-14T23:13:20Z"
