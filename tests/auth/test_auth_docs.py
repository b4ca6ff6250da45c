"""Keep docs/auth.md and the configuration reference honest about the auth keys."""

from pathlib import Path

from twistgate.policies.auth import parse

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_auth_key_is_documented():
    text = (DOCS / "auth.md").read_text(encoding="utf-8")
    keys = set(parse.ALL_KEYS) | set(parse.ROUTE_KEYS) | set(parse.ALGORITHMS)
    assert sorted(k for k in keys if f"`{k}`" not in text) == []


def test_the_configuration_reference_lists_the_auth_keys():
    text = (DOCS / "configuration.md").read_text(encoding="utf-8").split("## Authentication", 1)[1]
    keys = set(parse.ALL_KEYS) | set(parse.ROUTE_KEYS)
    assert sorted(k for k in keys if f"`{k}`" not in text) == []
    assert "auth.md" in text


def test_the_first_example_loads(tmp_path):
    import re

    from twistgate.config import load_text

    example = re.search(r"```yaml\n(.*?)```", (DOCS / "auth.md").read_text(encoding="utf-8"), flags=re.S).group(1)
    head = 'listeners: [{name: p, endpoint: "tcp:0"}]\nupstreams: {users: {targets: [{url: "http://u:80"}]}}\n'
    config = load_text(head + example, "auth.md", environ={})
    assert set(config.sections["auth"].authenticators) == {"keys", "tokens", "staff", "services"}
