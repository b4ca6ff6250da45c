"""docs/migrating-from-nginx.md: every example loads and validates (or is refused exactly as the text says)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from twistgate.config import ConfigError, load_text
from twistgate.validation import validate

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-nginx.md"
BLOCK = re.compile(r"(?:<!-- refused: (?P<refused>.*?) -->\n)?```yaml\n(?P<yaml>.*?)```", re.S)


def examples():
    return [(m.group("yaml"), m.group("refused")) for m in BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))]


def test_the_guide_has_examples():
    assert len(examples()) >= 3


@pytest.mark.parametrize("index", range(len(examples())))
def test_every_example_loads_and_validates(index):
    text, refused = examples()[index]
    try:
        config = load_text(text, f"migrating-from-nginx.md#{index}", environ={})
        issues = validate(config)
    except ConfigError as error:
        issues = list(error.issues)
    messages = [issue.message for issue in issues]
    if refused is None:
        assert messages == []
    else:
        assert messages == [refused]


def test_the_table_names_only_keys_that_exist():
    """Every `key:` the directive table offers is a key the loader knows somewhere."""
    from twistgate.config import _edge, _load, _routes, _sections, _upstreams, sections
    from twistgate.policies.auth import parse as auth_parse
    from twistgate.policies.cache import config as cache_config
    from twistgate.upstream import settings

    known = set(_load.GATEWAY_KEYS) | set(_routes.ROUTE_KEYS) | set(_sections.LISTENER_KEYS) | set(_sections.TLS_KEYS)
    known |= set(_sections.LIMIT_KEYS) | set(_upstreams.UPSTREAM_KEYS) | set(_upstreams.TARGET_KEYS)
    known |= set(_upstreams.TIMEOUT_KEYS) | set(_upstreams.POOL_KEYS) | set(_edge.STICKY_KEYS) | set(_edge.MATCH_KEYS)
    known |= set(_sections.SESSION_RESUMPTION_KEYS)
    known |= set(sections.route_sections()) | set(sections.upstream_sections()) | set(sections.gateway_sections())
    known |= set(auth_parse.ALL_KEYS) | set(cache_config.ROUTE_KEYS) | set(cache_config.GATEWAY_KEYS)
    known |= set(settings.RETRY_KEYS) | set(settings.ROUTE_RETRY_KEYS) | set(settings.HEALTH_CHECK_KEYS)
    known |= set(settings.OUTLIER_KEYS) | set(settings.DISCOVERY_KEYS) | {"min_size", "types", "cidrs", "deny", "limit"}
    known |= {"path", "format", "max_memory", "redirect_https", "to", "status", "body", "headers", "request", "response",
              "set", "remove", "regex", "replacement", "upstream", "weight", "url", "certificates", "key", "rate", "burst",
              "ip_allow"}  # a built-in plugin
    table = GUIDE.read_text(encoding="utf-8").split("## Directive table", 1)[1].split("## Differences that bite", 1)[0]
    twistgate_cells = [row.split("|")[2] for row in table.splitlines() if row.startswith("| ") and row.count("|") >= 4]
    written = set()
    for cell in twistgate_cells:
        written |= set(re.findall(r"(?:^|[{\s,`])([a-z_]+): ", cell))
    written -= {"staff"}  # a name the user chooses (an authenticator)
    assert sorted(written - known) == []
