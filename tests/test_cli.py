"""
The `twistgate` command as a user meets it: --version, plurals, exit codes
(0 ok, 1 invalid configuration or a failed operation, 2 usage, 3 explain
found no route), and a closed output pipe (`| head`).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from twistgate import __version__
from twistgate.cli import main, plural

ONE_OF_EACH = """\
listeners: [{name: p, endpoint: "tcp:0"}]
upstreams: {app: {targets: [{url: "http://127.0.0.1:9"}]}}
routes: [{name: r, path: "/*", upstream: app}]
"""


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"twistgate {__version__}\n"


@pytest.mark.parametrize("count, word, expected", [(0, "listener", "0 listeners"), (1, "listener", "1 listener"),
                                                   (2, "route", "2 routes"), (1, "upstream", "1 upstream")])
def test_plural(count, word, expected):
    assert plural(count, word) == expected


def test_check_counts_in_plain_english(tmp_path, capsys):
    path = tmp_path / "gw.yaml"
    path.write_text(ONE_OF_EACH)
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok (1 listener, 1 upstream, 1 route)\n"


@pytest.mark.parametrize(
    "argv",
    [[], ["nonsense"], ["check"], ["explain", "x.yaml"], ["keys"], ["keys", "create", "--config", "x.yaml"],
     ["check", "--bogus", "x.yaml"]],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_invalid_configuration_exits_1_for_every_command(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners: []\n")
    missing = str(tmp_path / "missing.yaml")
    for argv in (
        ["check", str(bad)], ["routes", str(bad)], ["explain", str(bad), "--path", "/"],
        ["keys", "list", "--config", str(bad)], ["check", missing], ["routes", missing],
        ["explain", missing, "--path", "/"], ["keys", "create", "--config", missing, "--consumer", "a"],
    ):
        assert main(argv) == 1, argv
        assert "Traceback" not in capsys.readouterr().err


def test_explain_without_a_matching_route_exits_3(tmp_path, capsys):
    path = tmp_path / "gw.yaml"
    path.write_text(ONE_OF_EACH.replace('path: "/*"', "path: /only"))
    assert main(["explain", str(path), "--path", "/other"]) == 3
    assert "no_route" in capsys.readouterr().out


def test_keys_without_an_api_key_authenticator_say_what_to_add(tmp_path, capsys):
    path = tmp_path / "gw.yaml"
    path.write_text(ONE_OF_EACH)
    assert main(["keys", "create", "--config", str(path), "--consumer", "acme"]) == 1
    err = capsys.readouterr().err
    assert "no api_key authenticator" in err
    snippet = textwrap.dedent(err.split("add one, for example:\n", 1)[1].split("\n\n", 1)[0])
    # the suggested snippet is valid configuration as it stands
    path.write_text(ONE_OF_EACH + snippet.replace("var/twistgate.db", str(tmp_path / "keys.db")) + "\n")
    assert main(["keys", "create", "--config", str(path), "--consumer", "acme"]) == 0
    assert "then name it on the routes it protects" in err


BIN = Path(sys.executable).parent


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    """`twistgate explain ... --json | head -1`, for real: the reader goes away, the command ends quietly with 0."""
    path = tmp_path / "gw.yaml"  # enough routes that the answer is more than a pipe holds (64 KiB)
    routes = "".join(f"  - {{name: route-{i}, path: /some/longer/prefix/{i}/*, upstream: app}}\n" for i in range(300))
    path.write_text(ONE_OF_EACH.split("routes:")[0] + "routes:\n" + routes)
    argv = [str(BIN / "twistgate"), "explain", str(path), "--path", "/some/longer/prefix/7/x", "--json"]
    err = tmp_path / "stderr"
    script = '"$@" 2>"$ERR" | head -1 >/dev/null; echo "${PIPESTATUS[0]}"'
    proc = subprocess.run(["bash", "-c", script, "bash", *argv], env={**os.environ, "ERR": str(err)},
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "0", err.read_text()
    assert err.read_text() == ""


class ClosedPipe(io.StringIO):
    """A stdout whose reader has gone: every write fails as a closed pipe does."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize(
    "command",
    [["explain", "{config}", "--path", "/x"], ["explain", "{config}", "--path", "/x", "--json"],
     ["routes", "{config}"], ["check", "{config}"], ["keys", "list", "--config", "{config}"]],
)
def test_every_command_survives_a_closed_pipe(tmp_path, monkeypatch, command):
    path = tmp_path / "gw.yaml"
    path.write_text(ONE_OF_EACH + f"auth: {{keys: {{type: api_key, store: 'sqlite:{tmp_path}/k.db'}}}}\n")
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main([a.format(config=path) for a in command]) == 0


def test_config_messages_count_in_plain_english():
    from tests.config_helpers import config_loader

    _, issues = config_loader('listeners: [{name: p, endpoint: "tcp:0"}]\n')
    assert issues("limits: {max_request_body: 0}\n")[0][2] == "must be at least 1 byte, got 0"
