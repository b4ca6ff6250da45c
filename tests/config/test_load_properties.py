"""
Property tests of the configuration loader: whatever the file holds, loading
it gives a config or a `ConfigError`, never a traceback; and every issue in a
document whose top level is a mapping names the key path it is about.
"""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twistgate.config import ConfigError, GatewayConfig, load_text

#: Key names the loader knows (and a few it does not), so that generated
#: documents reach deep into the sections instead of stopping at "unknown key".
KEYS = [
    "listeners", "limits", "upstreams", "routes", "plugins", "demo", "trusted_proxies", "admin", "auth",
    "rate_limiting", "cache", "access_log", "tracing", "reload", "defaults", "x-common",
    "name", "endpoint", "tls", "certificate", "private_key", "client_ca", "client_certificate", "min_version",
    "groups", "targets", "url", "weight", "balance", "timeouts", "connect", "read", "pool", "health_check",
    "retry", "circuit_breaker", "path", "upstream", "methods", "host", "priority", "strip_prefix",
    "add_prefix", "timeout", "rate_limit", "rate", "burst", "key", "type", "secret", "algorithms",
    "header", "store", "token", "max_request_body", "ttl", "cors", "origins", "headers", "request",
    "response", "set", "remove", "enabled", "cidrs", "security_headers", "hsts", "<<", "bogus", "",
]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
    st.sampled_from(["tcp:0", "tcp:8080", "8080", "http://127.0.0.1:1", "10s", "1MiB", "10/min", "/x/*",
                     "GET", "${NOPE}", "~^/(", "", " ", "api_key", "jwt", "round_robin", "1.3"]),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    ),
    max_leaves=25,
)
DOCUMENTS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6)
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load(text: str):
    try:
        return load_text(text, filename="gw.yaml", environ={"SET": "1"})
    except ConfigError as error:
        return error


@FAST
@given(DOCUMENTS)
def test_any_document_is_a_config_or_issues_with_key_paths(document):
    text = yaml.safe_dump(document, sort_keys=False)
    result = _load(text)
    if isinstance(result, GatewayConfig):
        return
    assert result.issues, text
    for issue in result.issues:
        assert issue.location.path, f"no key path: {issue}\n---\n{text}"
        assert issue.location.line >= 1, f"no line: {issue}\n---\n{text}"
        assert issue.message and "Traceback" not in issue.message


@FAST
@given(st.text(max_size=200))
def test_any_text_is_a_config_or_issues(text):
    result = _load(text)
    if isinstance(result, ConfigError):
        for issue in result.issues:
            assert issue.message
            for token in ("<block", "<scalar>"):  # PyYAML's token names (unless the text itself says them)
                assert token not in issue.message or token in text


@FAST
@given(DOCUMENTS, st.integers(min_value=0, max_value=400), st.sampled_from(["\t", ":", "- ", "  ", '"', "{", "]", "&a", "*b"]))
def test_a_damaged_document_is_reported_in_plain_words(document, at, damage):
    text = yaml.safe_dump(document, sort_keys=False)
    at = min(at, len(text))
    result = _load(text[:at] + damage + text[at:])
    if isinstance(result, ConfigError):
        for issue in result.issues:
            if issue.message.startswith("invalid YAML"):
                assert issue.location.line >= 1 and issue.location.column >= 1, issue
                assert "<block" not in issue.message and "<scalar>" not in issue.message, issue


# -- one damaged value in a working configuration ------------------------------
#
# Random documents rarely get past the first wrong key, so they never reach the
# parsers deep inside a section.  These start from every complete configuration
# the documentation shows (each loads) and replace one value, anywhere in it, by
# a random one: whatever it is, the answer is a config or issues with key paths.

import re  # noqa: E402
from pathlib import Path  # noqa: E402

ENVIRON = {"SET": "1", "TWISTGATE_ADMIN_TOKEN": "t", "JWT_SECRET": "x" * 40}


def _documented_configurations():
    found = []
    for page in sorted((Path(__file__).resolve().parents[2] / "docs").glob("*.md")):
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S):
            if "listeners:" not in block:
                continue
            try:
                load_text(block, environ=ENVIRON)
            except ConfigError:
                continue
            found.append(yaml.safe_load(block))
    return found


BASES = _documented_configurations()


def _paths(value, prefix=()):
    """Every place in a loaded document a value sits: key paths through mappings and lists."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, prefix + (index,))


def _replaced(document, path, new):
    if not path:
        return new
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[path[0]] = _replaced(document[path[0]], path[1:], new)
    return copy


def test_the_documentation_gives_working_configurations_to_damage():
    assert len(BASES) >= 10


@FAST
@given(st.data())
def test_one_wrong_value_anywhere_in_a_working_configuration_is_an_issue(data):
    base = data.draw(st.sampled_from(BASES))
    path = data.draw(st.sampled_from([p for p in _paths(base) if p]))
    document = _replaced(base, path, data.draw(VALUES))
    text = yaml.safe_dump(document, sort_keys=False)
    result = _load_with(text)
    if isinstance(result, GatewayConfig):
        return
    assert result.issues, text
    for issue in result.issues:
        assert issue.location.path, f"no key path: {issue}\n---\n{text}"
        assert issue.message and "Traceback" not in issue.message


def _load_with(text: str):
    try:
        return load_text(text, filename="gw.yaml", environ=ENVIRON)
    except ConfigError as error:
        return error
