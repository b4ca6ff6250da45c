"""Shared fixtures.  The reactor is imported lazily (see PITFALLS: importing it here breaks --reactor=asyncio)."""

from __future__ import annotations

import pytest

# pytester: tests of twistgate's own pytest plugin (twistgate.pytest_plugin) run pytest on example test files.
pytest_plugins = ("pytester",)


@pytest.fixture
def reactor():
    from twisted.internet import reactor as _reactor

    return _reactor


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory):
    """The example plugin pip-installed into a temporary directory (never into the suite's venv)."""
    from tests.installs import install_example_plugin

    return install_example_plugin(tmp_path_factory.mktemp("example-plugin") / "site")


def pytest_collection_modifyitems(items):
    """Everything under tests/integration/ uses real sockets or processes."""
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


# Third-party extension packages installed with pip into a temporary directory.
from tests.extension_packages import extension_packages, on_path  # noqa: E402,F401
