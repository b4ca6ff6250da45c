"""Keep docs/configuration.md honest: every accepted key documented, examples valid."""

import re
from pathlib import Path

import pytest

from twistgate.config import (
    ConfigError,
    _load,
    _pending,
    _routes,
    _sections,
    _upstreams,
    load_text,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

ACCEPTED = {
    "top level": _load.GATEWAY_KEYS,
    "listeners[]": _sections.LISTENER_KEYS,
    "listeners[].tls": _sections.TLS_KEYS + _sections.CLIENT_CERTIFICATE,
    "limits": _sections.LIMIT_KEYS,
    "demo": _sections.DEMO_KEYS,
    "upstreams.<name>": _upstreams.UPSTREAM_KEYS + _upstreams.BALANCE,
    "targets[]": _upstreams.TARGET_KEYS,
    "timeouts": _upstreams.TIMEOUT_KEYS,
    "pool": _upstreams.POOL_KEYS,
    "routes[]": _routes.ROUTE_KEYS,
    "plugins.<name>": ("enabled",),
}


def docs_text():
    return DOCS.read_text(encoding="utf-8")


@pytest.mark.parametrize("section", sorted(ACCEPTED))
def test_every_accepted_key_is_documented(section):
    """Each key the loader accepts appears in the reference as `key`."""
    text = docs_text()
    missing = [key for key in ACCEPTED[section] if f"`{key}`" not in text]
    assert missing == []


def test_every_feature_provided_contract_name_is_documented():
    """Each contract name a feature provides is listed in the docs' table of them."""
    table = docs_text().split("## Keys provided by features", 1)[1].split("\n## ", 1)[0]
    names = set(_pending.PENDING_BALANCE).union(*_pending.PENDING_KEYS.values())
    names |= {"least_connections", "ip_hash", "consistent_hash", "random", "least_response_time"}
    assert [n for n in sorted(names) if f"`{n}`" not in table] == []


def test_every_extension_section_is_documented():
    """Every section of the tables (top level, upstream, route) appears in the reference."""
    from twistgate.config import sections

    text = docs_text()
    for table in (sections.gateway_sections(), sections.upstream_sections(), sections.route_sections()):
        assert [key for key in sorted(table) if f"`{key}`" not in text] == []


def yaml_blocks():
    return re.findall(r"```yaml\n(.*?)```", docs_text(), flags=re.S)


def test_reference_example_loads():
    """The first, complete example in the reference is a valid configuration."""
    config = load_text(yaml_blocks()[0], filename="configuration.md", environ={})
    assert config.routes[0].name == "users"
    assert config.demo is not None


def test_error_example_is_what_the_loader_prints():
    """The error sample in the docs is real output for a matching file."""
    sample = re.search(r"```text\n(.*?)```", docs_text(), flags=re.S).group(1).splitlines()
    text = "\n".join(
        [
            "listeners:",
            "  - name: public",
            "    endpoint: tcp:${PORT}",
            "limits:",
            "  max_request_body: 10MB",
            "  request_timeout: 60",
            "upstreams:",
            "  users:",
            "    targets:",
            "      - url: http://127.0.0.1:5001",
            "routes:",
            "  - name: one",
            "    path: /one",
            "    upstrem: users",
            "  - name: two",
            "    path: /two",
            "    priority: 1",
            "    upstream: usres",
            "",
        ]
    )
    with pytest.raises(ConfigError) as info:
        load_text(text, filename="etc/gw.yaml", environ={})
    assert str(info.value).splitlines() == sample
