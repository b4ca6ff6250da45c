"""Issue 17 item 12: `twistgate plugin new NAME` (the generated package's own tests: tests/integration/test_plugin_new.py)."""

from __future__ import annotations

import pytest

from twistgate.cli import main
from twistgate.plugins.scaffold import ScaffoldError, files_for


def test_it_writes_a_package_and_says_what_next(tmp_path, capsys):
    assert main(["plugin", "new", "request_stamp", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "twistgate-request-stamp"
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == [".gitignore", "README.md", "pyproject.toml", "tests/test_request_stamp.py", "twistgate_request_stamp.py"]
    assert 'request_stamp = "twistgate_request_stamp:RequestStamp"' in (root / "pyproject.toml").read_text()
    assert "next: cd" in capsys.readouterr().out


def test_it_never_overwrites(tmp_path, capsys):
    (tmp_path / "twistgate-mine").mkdir()
    assert main(["plugin", "new", "mine", "--dir", str(tmp_path)]) == 1
    assert "already exists; nothing was written" in capsys.readouterr().err
    assert list((tmp_path / "twistgate-mine").iterdir()) == []


@pytest.mark.parametrize("name", ["Mine", "my-plugin", "9lives", "class", "ip_allow", ""])
def test_names_users_could_not_write_are_refused(name):
    with pytest.raises(ScaffoldError):
        files_for(name)


def test_the_generated_code_compiles_and_declares_its_options():
    files = files_for("x_y")
    namespace: dict = {}
    exec(compile(files["twistgate_x_y.py"], "twistgate_x_y.py", "exec"), namespace)
    from twistgate.plugins.options import options_spec

    described = {o.name: o.default for o in options_spec(namespace["XY"]).describe()}
    assert described == {"header": "X-X-Y", "value": "hello"}
    compile(files["tests/test_x_y.py"], "test_x_y.py", "exec")
