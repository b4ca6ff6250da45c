"""
``twistgate plugin new NAME``: a plugin package to start from, whose tests
pass as written (pyproject with the entry point, one hook, declared
options, tests with twistgate's fixtures, a README).
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from typing import Dict

__all__ = ["ScaffoldError", "files_for", "write_plugin"]

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class ScaffoldError(ValueError):
    """The name or the directory cannot be used; the message says why."""


def check_name(name: str) -> None:
    from twistgate.plugins.registry import BUILTIN_PLUGINS

    if not _NAME.match(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"{name!r} cannot be a plugin name: use lower-case letters, digits and underscores, "
            "starting with a letter (it is the name users write under plugins:)"
        )
    if name in BUILTIN_PLUGINS:
        raise ScaffoldError(f"{name!r} is a built-in plugin: built-in names win over entry points, choose another")


def files_for(name: str) -> Dict[str, str]:
    """The package's files, path -> text, for plugin `name`."""
    check_name(name)
    values = {
        "name": name,
        "module": f"twistgate_{name}",
        "project": f"twistgate-{name.replace('_', '-')}",
        "cls": "".join(part.capitalize() for part in name.split("_") if part),
        "header": "X-" + "-".join(part.capitalize() for part in name.split("_") if part),
    }
    values["header_lower"] = values["header"].lower()
    return {path.format(**values): text.format(**values) for path, text in _FILES.items()}


def write_plugin(name: str, parent: Path) -> Path:
    """Write the package into ``parent/twistgate-NAME``; its path.  An existing directory is never touched."""
    files = files_for(name)
    root = Path(parent) / f"twistgate-{name.replace('_', '-')}"
    if root.exists():
        raise ScaffoldError(f"{root} already exists; nothing was written")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


_PYPROJECT = '''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{project}"
version = "0.1.0"
description = "A twistgate plugin: {name}."
readme = "README.md"
requires-python = ">=3.9"
dependencies = ["twistgate"]

[project.optional-dependencies]
test = ["pytest"]  # twistgate brings its pytest fixtures (make_gateway, twistd_gateway)

# How twistgate finds the plugin: the name on the left is what users write
# under plugins:, the value is the factory, called with (options, context).
[project.entry-points.twistgate]
{name} = "{module}:{cls}"

[tool.setuptools]
py-modules = ["{module}"]
'''

_MODULE = '''"""
``{name}``: a twistgate plugin.  It sets a header on every response; make
it yours, with twistgate's guide to plugins (docs/plugins.md).
"""

import dataclasses

from twistgate.plugins import hookimpl


@dataclasses.dataclass(frozen=True)
class Options:
    """The options under ``plugins: {{{name}: ...}}``, checked and converted by twistgate."""

    header: str = dataclasses.field(default="{header}", metadata={{"doc": "the response header to set"}})
    value: str = dataclasses.field(default="hello", metadata={{"doc": "its value"}})

    def __post_init__(self):
        if not self.header.strip():
            raise ValueError("header must not be empty")


class {cls}:
    """Sets a header on every response."""

    Options = Options

    def __init__(self, options, context):
        self.header = options["header"]
        self.value = options["value"]
        self.log = context.log  # context also has clock, store, metrics, http_client

    @hookimpl
    def on_response(self, request, response):
        response.headers.setRawHeaders(self.header, [self.value])
'''

_TESTS = '''import pytest
from twistgate.config import ConfigError

from {module} import {cls}

YAML = """
routes: [{{name: api, path: "/*", upstream: app}}]
plugins:
  {name}: {{value: from-the-test}}
"""


def test_the_header_is_set(make_gateway):
    gw = make_gateway(YAML, plugins={{"{name}": {cls}}})
    response = gw.get("/anything")
    assert response.code == 200
    assert response.headers.getRawHeaders("{header}") == ["from-the-test"]
    assert gw.upstream.requests[-1]["path"] == "/anything"


def test_a_mistake_in_the_options_is_reported(make_gateway):
    with pytest.raises(ConfigError, match="unknown key 'valeu'; did you mean 'value'"):
        make_gateway(YAML.replace("value:", "valeu:"), plugins={{"{name}": {cls}}})


def test_under_twistd(twistd_gateway):  # the installed package, found through its entry point
    gw = twistd_gateway(YAML)
    assert gw.get("/anything").headers["{header_lower}"] == "from-the-test"
'''

_README = '''# {project}

A twistgate plugin: `{name}`.

```yaml
plugins:
  {name}: {{header: {header}, value: hello}}
```

| option | default | |
| --- | --- | --- |
| `header` | `{header}` | the response header to set |
| `value` | `hello` | its value |

## Develop

```sh
pip install -e '.[test]'     # installs the entry point, so twistgate finds {name}
pytest                       # in memory, and under the real twistd
twistgate plugins            # lists {name} with its options
```

The guide to the hooks, the context (clock, store, metrics, log) and the
test fixtures is twistgate's docs/plugins.md.
'''

_GITIGNORE = """__pycache__/
*.egg-info/
build/
dist/
.pytest_cache/
"""

_FILES = {
    ".gitignore": _GITIGNORE,
    "pyproject.toml": _PYPROJECT,
    "{module}.py": _MODULE,
    "tests/test_{name}.py": _TESTS,
    "README.md": _README,
}
