"""Tests for the YAML node walker: syntax, keys, types and issue locations."""

import textwrap

import pytest

from twistgate.config import ConfigError, load_text

HEAD = 'listeners: [{name: a, endpoint: "tcp:1"}]\n'


def issues(text, environ=None):
    with pytest.raises(ConfigError) as info:
        load_text(textwrap.dedent(text).lstrip("\n"), filename="gw.yaml", environ=environ or {})
    return info.value.issues


def triples(found):
    return [(i.location.line, i.location.path, i.message) for i in found]


def test_syntax_error_has_line():
    """A YAML syntax error becomes a ConfigError pointing at its line."""
    found = issues(
        """
        listeners:
          - name: a
            endpoint: "tcp:1
        limits: {}
        """
    )
    assert triples(found) == [
        (3, "", "invalid YAML: a quoted value starts here but is never closed: add the closing quote")
    ]
    assert found[0].location.file == "gw.yaml"
    assert str(found[0]).startswith("gw.yaml:3:15: invalid YAML")  # line and column of the opening quote


def test_bad_indentation_line():
    """A mapping/sequence mix-up is reported on the offending line."""
    found = issues(
        """
        listeners:
          - name: a
           endpoint: x
        """
    )
    assert (found[0].location.line, found[0].location.path) == (3, "")
    assert "invalid YAML" in found[0].message


def test_control_character_is_a_yaml_error():
    """Characters YAML forbids are reported with their line."""
    found = issues("listeners: []\nx: \x00\n")
    assert found[0].location.line == 2
    assert found[0].message.startswith("invalid YAML")


def test_two_documents_are_refused():
    """A file holds one document."""
    found = issues(HEAD + "---\n" + HEAD)
    assert "invalid YAML" in found[0].message


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_file(text):
    """An empty file is an error, not an empty config."""
    found = issues(text)
    assert triples(found) == [(1, "", "the file is empty; it needs at least a 'listeners' section")]
    assert str(found[0]) == "gw.yaml:1: the file is empty; it needs at least a 'listeners' section"


@pytest.mark.parametrize(
    "text, kind", [("- a\n- b\n", "list"), ("hello\n", "string 'hello'"), ("42\n", "integer '42'")]
)
def test_top_level_must_be_a_mapping(text, kind):
    """A list or scalar document is refused, saying what it was."""
    found = issues(text)
    assert found[0].message == f"the top level must be a mapping with at least 'listeners', got {kind}"


def test_listeners_are_required():
    """A mapping without listeners reports the missing key."""
    found = issues("routes: []\n")
    assert triples(found) == [(1, "listeners", "required key 'listeners' is missing")]


def test_duplicate_key_is_an_error():
    """PyYAML keeps the last duplicate silently; we report it with both lines."""
    found = issues(
        """
        listeners: [{name: a, endpoint: "tcp:1"}]
        limits:
          max_headers: 10
          request_timeout: 5s
          max_headers: 20
        """
    )
    assert triples(found) == [(5, "limits.max_headers", "duplicate key 'max_headers' (first on line 3)")]


def test_duplicate_top_level_key():
    """Duplicates are found at every level, including the top."""
    found = issues(HEAD + "routes: []\nroutes: []\n")
    assert triples(found) == [(3, "routes", "duplicate key 'routes' (first on line 2)")]


def test_unknown_key_suggests_closest():
    """An unknown key names the closest known key (difflib)."""
    found = issues(HEAD + "limit: {}\n")
    assert triples(found) == [(2, "limit", "unknown key 'limit'; did you mean 'limits'?")]


def test_unknown_key_without_close_match():
    """No suggestion is made when nothing is close."""
    found = issues(HEAD + "zzzz: 1\n")
    assert found[0].message == "unknown key 'zzzz'"


def test_unknown_key_points_at_the_key_line():
    """The issue points at the key, not at its (block) value."""
    found = issues(
        """
        listeners:
          - name: a
            endpoint: tcp:1
            tlz:
              certificate: c
        """
    )
    assert triples(found) == [(4, "listeners[0].tlz", "unknown key 'tlz'; did you mean 'tls'?")]


@pytest.mark.parametrize(
    "value, message",
    [
        ("[1, 2]", "expected a duration like 30s, got list"),
        ("{a: 1}", "expected a duration like 30s, got mapping"),
        ("true", "expected a duration like 30s, got boolean 'true'"),
        ("", "expected a duration like 30s, got null"),
        ("2024-01-01", "expected a duration like 30s, got date '2024-01-01'"),
    ],
)
def test_wrong_type_for_duration(value, message):
    """A value of the wrong YAML type says what was expected and what was found."""
    found = issues(HEAD + f"limits:\n  idle_timeout: {value}\n")
    assert triples(found) == [(3, "limits.idle_timeout", message)]


@pytest.mark.parametrize(
    "value, message",
    [
        ("1.5", "expected an integer, got number '1.5'"),
        ("'10'", "expected an integer, got string '10'"),
        ("ten", "expected an integer, got string 'ten'"),
        ("0", "must be at least 1, got 0"),
    ],
)
def test_integers_must_be_real_ints(value, message):
    """Ints must be YAML ints, and in range."""
    found = issues(HEAD + f"limits: {{max_headers: {value}}}\n")
    assert triples(found) == [(2, "limits.max_headers", message)]


@pytest.mark.parametrize("value", ["'true'", "1", "maybe"])
def test_booleans_must_be_real_bools(value):
    """A string or a number is not a boolean."""
    found = issues(
        HEAD + "upstreams: {u: {targets: [{url: 'http://h'}]}}\n"
        f"routes: [{{name: r, path: /, upstream: u, preserve_host: {value}}}]\n"
    )
    assert found[0].location.path == "routes[0].preserve_host"
    assert found[0].message.startswith("expected true or false, got ")


def test_string_expected_hints_at_quoting():
    """A number where a string is expected suggests quoting it."""
    found = issues('listeners: [{name: 2024, endpoint: "tcp:1"}]\n')
    assert found[0].message == "expected a string, got integer '2024' (quote it to make it a string)"


def test_empty_string_is_refused():
    """Required strings must not be empty."""
    found = issues('listeners: [{name: "", endpoint: "tcp:1"}]\n')
    assert triples(found) == [(1, "listeners[0].name", "must not be empty")]


def test_unsupported_tag():
    """Python-specific or unknown tags are refused, never constructed."""
    found = issues(HEAD + "plugins:\n  p: {x: !!python/name:os.system ''}\n")
    assert found[0].location.path == "plugins.p.x"
    assert "unsupported YAML tag" in found[0].message


def test_non_string_key():
    """Keys must be scalars."""
    found = issues(HEAD + "plugins:\n  ? [a, b]\n  : 1\n")
    assert found[0].message == "mapping keys must be strings"


def test_anchor_alias_and_merge():
    """Anchors, aliases and << merges work; explicit keys override merged ones."""
    config = load_text(
        textwrap.dedent(
            """
            listeners: [{name: a, endpoint: "tcp:1"}]
            upstreams:
              u:
                targets: [{url: "http://h"}]
                timeouts: &fast {connect: 1s, read: 2s}
              v:
                targets: [{url: "http://i"}]
                timeouts:
                  <<: *fast
                  read: 9s
            routes:
              - {name: r1, path: /a, upstream: u, plugins: {p: &opts {level: 1}}}
              - {name: r2, path: /b, upstream: v, plugins: {p: *opts}}
            """
        ),
        environ={},
    )
    assert config.upstreams["v"].timeouts.connect == 1.0
    assert config.upstreams["v"].timeouts.read == 9.0
    assert config.routes[1].plugins[0].options == {"level": 1}


def test_merge_of_a_list_of_mappings_first_wins():
    """With <<: [*a, *b], keys of the earlier mapping win (YAML merge spec)."""
    config = load_text(
        HEAD
        + "plugins:\n  one: &a {k: 1}\n  two: &b {k: 2, j: 3}\n  three: {<<: [*a, *b]}\n",
        environ={},
    )
    assert config.plugins[2].options == {"k": 1, "j": 3}


def test_bad_merge_value():
    """<< takes mappings only."""
    found = issues(HEAD + "limits:\n  <<: 5\n")
    assert triples(found) == [(3, "limits", "'<<' takes a mapping or a list of mappings")]


def test_recursive_alias_in_plugin_options():
    """A self-referencing structure is reported, not looped over forever."""
    found = issues(HEAD + "plugins:\n  p: {loop: &l [*l]}\n")
    assert "recursive YAML alias" in found[0].message


def test_an_error_without_its_own_wording_still_reads_as_a_sentence():
    """The fallback keeps 'but found' (it once read "expected the node content, but a '- item'")."""
    found = issues("listeners: [\n  - name: a\n")
    assert (found[0].location.line, found[0].location.column) == (2, 3)
    assert found[0].message == "invalid YAML: expected a value, but found a '- item'"


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("listeners: - a\n", (1, 12), "a '- item' where no list can start: a list after 'key:' begins on the next line"),
        ("listeners: &\n", (1, 13), "'&' starts an anchor or alias and needs a name after it"),
        ("listeners: *\n", (1, 13), "'*' starts an anchor or alias and needs a name after it"),
        ("listeners: ? a\n", (1, 12), "a '? ' where no key can start"),
        ("listeners: |x\n  a\n", (1, 13), "after '|' or '>' only '+', '-' or an indentation digit"),
        ('listeners:\n  - name: "a" b\n', (2, 15), "more text after a quoted value: put all of the value inside the quotes"),
    ],
)
def test_more_yaml_mistakes_in_plain_words(text, where, message):
    """Issue 14: no raw PyYAML text ('expected alphabetic or numeric character, but found' ...)."""
    [found] = issues(text)
    assert (found.location.line, found.location.column) == where
    assert found.message.startswith("invalid YAML: " + message), found.message
