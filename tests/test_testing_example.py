"""The testing examples of docs/plugins.md, run for real (with the reference plugin) so they cannot rot."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture
def docs_namespace(monkeypatch):
    """The code blocks of "Testing a plugin", run with the reference plugin importable."""
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "twistgate-tenant-quota"))
    text = (ROOT / "docs" / "plugins.md").read_text()
    section = text.split("## Testing a plugin", 1)[1]
    namespace: dict = {"__name__": "plugins_md"}
    for code in re.findall(r"```python\n(.*?)```", section, re.S):
        exec(compile(code, "docs/plugins.md", "exec"), namespace)
    yield namespace
    sys.modules.pop("twistgate_tenant_quota", None)


def test_the_make_gateway_example_runs(docs_namespace, make_gateway):
    docs_namespace["test_over_quota"](make_gateway)


def test_the_plain_object_example_runs(docs_namespace):
    docs_namespace["test_remaining_header_and_admin_page"]()
