"""Tests for ${NAME} substitution, directly and through the loader."""

import textwrap

import pytest

from twistgate.config import ConfigError, load_text
from twistgate.config._env import has_reference, substitute


def load(text, environ):
    return load_text(textwrap.dedent(text).lstrip("\n"), filename="gw.yaml", environ=environ)


def issues(text, environ):
    with pytest.raises(ConfigError) as info:
        load(text, environ)
    return info.value.issues


def test_substitute_one_and_several():
    """Every reference in a string is replaced, wherever it stands."""
    env = {"HOST": "10.0.0.1", "PORT": "8080"}
    assert substitute("tcp:${PORT}", env) == ("tcp:8080", [])
    assert substitute("http://${HOST}:${PORT}/", env) == ("http://10.0.0.1:8080/", [])


def test_substitute_escape():
    """$${ writes a literal ${ and is not looked up."""
    assert substitute("$${HOME} costs $5", {}) == ("${HOME} costs $5", [])


def test_substitute_problems():
    """Missing variables, bad names and an unclosed ${ are each reported."""
    _, problems = substitute("${MISSING} ${1BAD} ${OPEN", {})
    assert problems == [
        "environment variable 'MISSING' is not set",
        "invalid environment variable name '1BAD' in '${1BAD}'",
        "unterminated '${' (write '$${' for a literal '${')",
    ]


def test_has_reference():
    """Only a real ${NAME} counts; an escaped one does not."""
    assert has_reference("a${B}c")
    assert not has_reference("a$${B}c")
    assert not has_reference("plain")


def test_present_variable_in_endpoint():
    """A variable inside a longer string (tcp:${PORT}) is substituted."""
    config = load(
        """
        listeners:
          - name: public
            endpoint: tcp:${PORT}:interface=${ADDR}
        """,
        {"PORT": "9000", "ADDR": "127.0.0.1"},
    )
    assert config.listeners[0].endpoint == "tcp:9000:interface=127.0.0.1"


def test_missing_variable_is_an_issue_with_location():
    """A missing variable names the variable, at the line and path that used it."""
    found = issues(
        """
        listeners:
          - name: public
            endpoint: tcp:${PORT}
        """,
        {},
    )
    assert [(i.location.line, i.location.path, i.message) for i in found] == [
        (3, "listeners[0].endpoint", "environment variable 'PORT' is not set")
    ]


def test_escaped_reference_stays_literal():
    """$${ in a plugin option gives a literal ${, with no lookup."""
    config = load(
        """
        listeners: [{name: a, endpoint: "tcp:1"}]
        plugins:
          templ: {pattern: "$${USER}-${SUFFIX}"}
        """,
        {"SUFFIX": "x"},
    )
    assert config.plugins[0].options == {"pattern": "${USER}-x"}


def test_numeric_string_from_environ_becomes_int():
    """An int field written as ${NAME} takes the variable's number."""
    config = load(
        """
        listeners: [{name: a, endpoint: "tcp:1"}]
        limits: {max_headers: "${MAX}", max_request_body: "${BODY}"}
        upstreams:
          u:
            targets: [{url: "http://h", weight: "${W}"}]
            pool: {max_idle_per_target: "${IDLE}"}
        routes:
          - {name: r, path: /, upstream: u, priority: "${PRIO}", preserve_host: "${KEEP}"}
        """,
        {"MAX": "50", "BODY": "2MiB", "W": "3", "IDLE": "7", "PRIO": "-2", "KEEP": "true"},
    )
    assert config.limits.max_headers == 50
    assert config.limits.max_request_body == 2 * 1024 * 1024
    assert config.upstreams["u"].targets[0].weight == 3
    assert config.upstreams["u"].pool.max_idle_per_target == 7
    assert config.routes[0].priority == -2
    assert config.routes[0].preserve_host is True


def test_non_numeric_value_from_environ():
    """A variable that is not a number where one is expected is an issue."""
    found = issues(
        """
        listeners: [{name: a, endpoint: "tcp:1"}]
        limits: {max_headers: "${MAX}"}
        """,
        {"MAX": "many"},
    )
    assert [(i.location.line, i.location.path) for i in found] == [(2, "limits.max_headers")]
    assert "expected an integer, got 'many' from the environment" in found[0].message


def test_quoted_number_without_reference_is_not_an_int():
    """Only substituted strings are converted: a quoted "50" stays a string."""
    found = issues(
        """
        listeners: [{name: a, endpoint: "tcp:1"}]
        limits: {max_headers: "50"}
        """,
        {},
    )
    assert found[0].message == "expected an integer, got string '50'"


def test_keys_are_not_substituted():
    """Only values are substituted: a ${...} key is just an (unknown) key."""
    found = issues(
        """
        listeners: [{name: a, endpoint: "tcp:1"}]
        ${KEY}: 1
        """,
        {"KEY": "limits"},
    )
    assert found[0].location.path == "['${KEY}']"
    assert found[0].message.startswith("unknown key '${KEY}'")
