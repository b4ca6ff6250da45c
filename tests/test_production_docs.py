"""
docs/production.md stays true: the unit file verifies with systemd-analyze,
the container file parses (the official Dockerfile grammar) and has the
stages the page promises, and every YAML block loads.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from twistgate.config import load_text

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "production.md").read_text(encoding="utf-8")
UNIT = ROOT / "deploy" / "twistgate.service"
CONTAINERFILE = ROOT / "deploy" / "Containerfile"


def blocks(language: str):
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


def test_the_page_shows_the_shipped_files():
    assert UNIT.read_text() in blocks("ini")
    assert CONTAINERFILE.read_text() in blocks("dockerfile")
    shipped = (ROOT / "deploy" / "gw.yaml").read_text().splitlines(keepends=True)
    body = "".join(shipped[next(i for i, line in enumerate(shipped) if not line.startswith("#")):])
    assert "# deploy/gw.yaml\n" + body in blocks("yaml")


def test_the_unit_file_verifies(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is required in CI (tests/run.sh installs the systemd package)")
        pytest.skip("systemd-analyze is not installed")
    # verify checks that the programs exist: point them at this environment's
    bin_dir = Path(sys.executable).parent
    unit = tmp_path / "twistgate.service"
    unit.write_text(UNIT.read_text().replace("/opt/twistgate/bin/", f"{bin_dir}/"))
    result = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_the_unit_runs_unprivileged_with_reload_and_drain():
    text = UNIT.read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, flags=re.M))
    assert settings["User"] == "twistgate" and "root" not in settings["User"]
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert settings["KillSignal"] == "SIGTERM"
    assert int(settings["TimeoutStopSec"]) > 30  # above limits.drain_timeout's default
    assert settings["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert "--nodaemon" in settings["ExecStart"] and "twistgate --config" in settings["ExecStart"]


def test_the_container_file_parses_and_is_multi_stage_non_root_with_a_health_check():
    try:
        import dockerfile  # the official (BuildKit) parser, from PyPI (a CPython-only test extra)
    except ImportError:
        if os.environ.get("CI") and platform.python_implementation() == "CPython":
            pytest.fail("the dockerfile package is required in CI (pip install -e '.[test]')")
        pytest.skip("the dockerfile parser is not installed (it has no PyPy wheel)")
    commands = dockerfile.parse_file(str(CONTAINERFILE))
    stages = [c for c in commands if c.cmd == "FROM"]
    assert len(stages) == 2 and stages[0].value[-2:] == ("AS", "build")
    final = commands[commands.index(stages[-1]):]
    users = [c.value[0] for c in final if c.cmd == "USER"]
    assert users and not users[-1].startswith(("0", "root"))
    [health] = [c for c in final if c.cmd == "HEALTHCHECK"]
    assert "/livez" in " ".join(health.value)
    assert any(c.cmd == "COPY" and "--from=build" in c.flags for c in final)
    # every file the build copies from the repository exists
    for copy in (c for c in commands if c.cmd == "COPY" and not c.flags):
        for source in copy.value[:-1]:
            assert (ROOT / source).exists(), source
    entry = [c for c in final if c.cmd == "ENTRYPOINT"][0]
    assert entry.json and entry.value[:2] == ("/opt/twistgate/bin/twistd", "--nodaemon")


@pytest.mark.parametrize("index", range(len(blocks("yaml"))))
def test_every_configuration_loads(index):
    text = blocks("yaml")[index]
    if "listeners:" not in text:  # a fragment (one section): give it the one required section
        text = 'listeners: [{name: p, endpoint: "tcp:0"}]\n' + text
    config = load_text(text, filename=f"production.md yaml block {index}", environ={"TWISTGATE_ADMIN_TOKEN": "t"})
    assert config.listeners


def test_the_container_configuration_loads_from_the_file():
    from twistgate.config import load_file

    assert load_file(str(ROOT / "deploy" / "gw.yaml"), environ={"TWISTGATE_ADMIN_TOKEN": "t"}).sections["admin"]


def test_log_rotation_signals_the_gateway_instead_of_copytruncate():
    """Issue 14: the access log reopens on SIGUSR1, so logrotate renames and signals (no copy, no lost lines)."""
    [conf] = [b for b in blocks("conf") if "/etc/logrotate.d/twistgate" in b]
    assert "copytruncate" not in conf
    assert re.search(r"postrotate\n\s+/bin/kill -USR1 .*\n\s+endscript", conf)
    assert "--logger=twistgate.logs.stderr" in DOC
    from twistgate.logs import stderr

    assert callable(stderr())


def test_coming_from_nginx_names_only_what_this_version_loads():
    """
    Issue 14: the nginx table once marked as *planned* five features that had
    shipped (backup targets, forward auth, redirect_https, respond/redirect,
    workers: auto). Whatever the table names, the loader takes.
    """
    from twistgate.config import load_text

    table = DOC.split("## Coming from nginx", 1)[1].split("A whole nginx site", 1)[0]
    assert "planned" not in table
    for words in ("`backup: true`", "`type: forward`", "`redirect_https: true`", "`respond: {status: 410}`",
                  "`redirect: {to: ..., status: 301}`", "`workers: auto`", "client_body_timeout: 30s",
                  "`limits: {request_buffering: true}`"):
        assert words in table, words
    config = load_text(
        """
listeners:
  - {name: https, endpoint: "tcp:0"}
  - {name: plain, endpoint: "tcp:0", redirect_https: true}
limits: {client_header_timeout: 10s, client_body_timeout: 30s, request_buffering: true}
workers: auto
auth:
  check: {type: forward, url: "http://127.0.0.1:9000/check"}
upstreams:
  backend: {targets: [{url: "http://10.0.0.1:8000"}, {url: "http://10.0.0.2:8000", backup: true}]}
routes:
  - {name: gone, path: /old, respond: {status: 410}}
  - {name: moved, path: /was, redirect: {to: /is, status: 301}}
  - {name: api, path: /api/*, upstream: backend, auth: [check]}
""",
        filename="nginx table",
    )
    assert config.upstreams["backend"].targets[1].backup and config.limits.request_buffering


def test_the_page_does_not_say_session_resumption_is_off():
    """security.md: resumption is on by default (off with client certificates); this page once said 'no session resumption'."""
    assert "no session resumption" not in DOC
    assert "session_resumption: false" in DOC


@pytest.mark.parametrize("index", range(len(blocks("yaml"))))
def test_every_configuration_passes_twistgate_check(index, tmp_path, monkeypatch, capsys):
    """
    Issue 14: each configuration on the page, through `twistgate check` itself
    (which also opens the certificate files: Let's Encrypt's paths point at a
    certificate made here).
    """
    from tests.tls.certs import Factory
    from twistgate.cli import main

    text = blocks("yaml")[index]
    if "listeners:" not in text:
        text = 'listeners: [{name: p, endpoint: "tcp:0"}]\n' + text
    if "/etc/twistgate/tls/" in text:
        factory = Factory(tmp_path)
        leaf = factory.leaf("server", factory.ca("ca", "Test CA"), common_name="api.example.com", dns=["api.example.com"])
        text = text.replace("/etc/twistgate/tls/fullchain.pem", leaf.certificate)
        text = text.replace("/etc/twistgate/tls/privkey.pem", leaf.key)
    text = text.replace("/var/log/twistgate/", f"{tmp_path}/")  # systemd's LogsDirectory= makes it there
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    monkeypatch.setenv("TWISTGATE_ADMIN_TOKEN", "t0k3n")
    assert main(["check", str(path)]) == 0, capsys.readouterr()
    assert ": ok (" in capsys.readouterr().out
