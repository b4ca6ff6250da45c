"""
A route whose layers never look at the forwarding fields
(`twistgate.chain.forwarding_blind`: JWT, a rate limit by consumer...) sends
them as the prepared block a bare route sends (`Route.prepared_forwarding`),
with the same values; a route with a layer that reads or edits them (a
header transform, a rate limit keyed by one, a plugin) keeps the
field-by-field path, and that layer still sees them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import jwt
import pytest

from tests.seam_wiring import Wired
from tests.test_prepared_fields import _parsed
from twistgate.chain import POLICIES, blind, outside
from twistgate.policies.ratelimit import stage as rate_limit
from twistgate.policies import SEES_ALL, Policy, Sight
from twistgate.policies.auth.jwt_auth import JwtAuthenticator
from twistgate.plugins.hookspecs import hookimpl
from twistgate.plugins.registry import BUILTIN_PLUGINS, PluginRegistry

SECRET = "prepared-forwarding-" + "0" * 24
AUTH = """
auth:
  tokens: {type: jwt, algorithms: [HS256], secret: "%s", forward_claims: {sub: X-User}}
""" % SECRET
TOKEN = jwt.encode({"sub": "alice", "exp": 4_000_000_000}, SECRET, algorithm="HS256").encode("ascii")
JWT_AND_LIMIT = ", auth: [tokens], rate_limit: {rate: 1000/s, burst: 1000, key: consumer}"
#: A layer that is not blind (it edits request headers): the field-by-field path, as before.
EDITING = ", headers: {request: {set: {X-Extra: '1'}}}"

#: The client's own forwarding fields in several spellings, and a forged identity header.
SPOOFING = (
    b"GET /x HTTP/1.1\r\nHost: GW:8080\r\nx-forwarded-for: 6.6.6.6\r\nFORWARDED: for=6.6.6.6\r\n"
    b"X-Forwarded-Host: evil\r\nx-Forwarded-proto: https\r\nX-User: mallory\r\nX-Request-Id: abc-1\r\n"
    b"Authorization: Bearer %s\r\n\r\n" % TOKEN
)
FORWARDED = {
    b"X-Forwarded-For": [b"192.0.2.7"],
    b"X-Forwarded-Proto": [b"http"],
    b"X-Forwarded-Host": [b"GW:8080"],
    b"Forwarded": [b"for=192.0.2.7;host=GW:8080;proto=http"],
    b"Via": [b"1.1 twistgate"],
}


def _exchange(wired: Wired, request: bytes) -> Tuple[Dict[bytes, List[bytes]], Dict[bytes, List[bytes]]]:
    """The fields the upstream got for `request` (its 200 answer given), and those of the client's answer."""
    upstream = wired.send(request)
    assert upstream is not None, wired.client_wire.value()
    sent = _parsed(wired.sent.split(b"\r\n\r\n")[0])[1]
    out = wired.answer(upstream, [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    return sent, _parsed(out.split(b"\r\n\r\n")[0])[1]


@pytest.mark.parametrize("engine", ["httptools", "twisted"])
@pytest.mark.parametrize("more", ["", EDITING])
def test_blind_layers_send_the_fields_the_per_field_path_sends(more: str, engine: str) -> None:
    """JWT + rate limit: prepared; with a header transform added, field by field; the upstream sees the same."""
    wired = Wired(route=JWT_AND_LIMIT + more, sections=AUTH + f"engine: {engine}\n")
    assert wired.generation.routes_by_name["all"].prepared_forwarding is (more == "")
    sent, answer = _exchange(wired, SPOOFING)
    for name, values in FORWARDED.items():
        assert sent.pop(name) == values, name  # each once: the client's own are gone, whatever their case
    assert sent.pop(b"X-User") == [b"alice"]  # the forged one removed, auth's own set
    assert sent.pop(b"X-Request-Id") == [b"abc-1"] and len(sent.pop(b"Traceparent")) == 1
    assert sent.pop(b"X-Extra", [b"1"]) == [b"1"]
    assert sent == {b"Host": [b"127.0.0.1:9"]}  # the token was taken out
    assert answer[b"Ratelimit-Policy"]  # the rate limit's answer headers, as before
    (record,) = wired.records
    assert (record.client_ip, record.consumer, record.status) == ("192.0.2.7", "alice", 200)


@pytest.mark.parametrize(
    "sections, request_, continued",
    [
        ("trusted_proxies: [192.0.2.0/24]\n", SPOOFING, (b"X-Forwarded-For", [b"6.6.6.6, 192.0.2.7"])),
        ("", SPOOFING.replace(b"X-User:", b"Via: 1.0 edge\r\nX-User:"), (b"Via", [b"1.0 edge, 1.1 twistgate"])),
    ],
)
def test_a_trusted_peer_or_a_client_via_is_continued_on_a_prepared_route(
    sections: str, request_: bytes, continued: Tuple[bytes, List[bytes]]
) -> None:
    wired = Wired(route=JWT_AND_LIMIT, sections=AUTH + sections)
    assert wired.generation.routes_by_name["all"].prepared_forwarding
    sent, _ = _exchange(wired, request_)
    name, values = continued
    assert sent[name] == values
    assert sent[b"X-User"] == [b"alice"]


def test_a_header_transform_still_edits_the_forwarding_fields() -> None:
    edits = ", headers: {request: {set: {X-Forwarded-Proto: https}, rename: {X-Forwarded-For: X-Client}}}"
    wired = Wired(route=JWT_AND_LIMIT + edits, sections=AUTH)
    assert not wired.generation.routes_by_name["all"].prepared_forwarding
    sent, _ = _exchange(wired, SPOOFING)
    assert sent[b"X-Forwarded-Proto"] == [b"https"]  # set once, not added to the gateway's
    assert sent[b"X-Client"] == [b"192.0.2.7"] and b"X-Forwarded-For" not in sent


def test_a_rate_limit_keyed_by_a_forwarding_field_reads_it() -> None:
    """Keyed by X-Forwarded-Host: two Hosts are two keys (without the field it would be the address: one key)."""
    limit = ", rate_limit: {rate: 1/min, burst: 1, key: 'header:X-Forwarded-Host'}"
    wired = Wired(route=limit)
    assert not wired.generation.routes_by_name["all"].prepared_forwarding
    for host in (b"a.example", b"b.example"):
        sent, _ = _exchange(wired, b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
        assert sent[b"X-Forwarded-Host"] == [host]
    wired.client.dataReceived(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
    assert wired.client_wire.value().startswith(b"HTTP/1.1 429")


class _Peek:
    """Tells the upstream (or the client) the X-Forwarded-For it saw, and edits it."""

    @hookimpl
    def on_request(self, request: Any) -> None:
        seen = request.headers.raw.get(b"X-Forwarded-For", [b"none"])
        request.headers.raw[b"X-Seen"] = list(seen)
        request.headers.raw[b"X-Forwarded-For"] = [b"10.9.9.9"]


class _Watch:
    @hookimpl
    def on_response(self, request: Any, response: Any) -> None:
        response.headers.raw[b"X-Seen"] = list(request.headers.raw.get(b"X-Forwarded-For", [b"none"]))


PLUGINS = PluginRegistry({**BUILTIN_PLUGINS, "peek": lambda options, context: _Peek(), "watch": lambda o, c: _Watch()})


@pytest.mark.parametrize("own", [True, False])
def test_a_plugin_sees_and_edits_the_forwarding_fields(own: bool) -> None:
    """The route's own plugin or the gateway's: either sees the request."""
    route, sections = (", plugins: {peek: {}}", "") if own else ("", "plugins: {peek: {}}\n")
    wired = Wired(route=JWT_AND_LIMIT + route, sections=AUTH + sections, plugin_registry=PLUGINS)
    assert not wired.generation.routes_by_name["all"].prepared_forwarding
    sent, _ = _exchange(wired, SPOOFING)
    assert sent[b"X-Seen"] == [b"192.0.2.7"] and sent[b"X-Forwarded-For"] == [b"10.9.9.9"]


def test_a_plugin_on_the_way_back_sees_the_forwarding_fields() -> None:
    wired = Wired(route=JWT_AND_LIMIT + ", plugins: {watch: {}}", sections=AUTH, plugin_registry=PLUGINS)
    assert not wired.generation.routes_by_name["all"].prepared_forwarding
    _, answer = _exchange(wired, SPOOFING)
    assert answer[b"X-Seen"] == [b"192.0.2.7"]


FORWARD_AUTH = 'auth: {gate: {type: forward, url: "http://127.0.0.1:9/check"}}\n'


@pytest.mark.parametrize(
    "upstream, route, sections, prepared",
    [
        ("", "", "", True),  # bare
        ("", JWT_AND_LIMIT, AUTH, True),
        ("", ", rate_limit: {rate: 9/s, key: [ip, route, 'header:X-Api-Key']}", "", True),
        ("", ", rate_limit: {rate: 9/s, key: [consumer, 'header:x-forwarded-for']}", "", False),
        ("", ", concurrency: {limit: 9, key: consumer}", "", True),
        ("", ", concurrency: {limit: 9, key: 'header:Forwarded'}", "", False),
        ("", ", cors: {origins: ['https://a.example']}, compression: {}, rewrite: {regex: '^/a/(.*)', replacement: '/b/$1'}", "", True),
        ("", ", query: {remove: [debug]}, json_envelope: {}, hide_server_header: true", "", True),
        ("", ", auth: [gate]", FORWARD_AUTH, False),  # its subrequest carries X-Forwarded-*
        ("", ", security_headers: true", "", False),  # reads X-Forwarded-Proto
        ("", ", cache: {}", "", False),
        ("", EDITING, "", False),
        (", balance: consistent_hash, hash_key: 'header:X-Forwarded-Host'", "", "", False),
        (", balance: consistent_hash, hash_key: 'header:X-Tenant'", "", "", True),
    ],
)
def test_which_routes_send_the_forwarding_fields_prepared(upstream: str, route: str, sections: str, prepared: bool) -> None:
    """Decided at load, per policy and its configuration (`twistgate.chain.forwarding_blind`)."""
    wired = Wired(upstream=upstream, route=route, sections=sections)
    assert wired.generation.routes_by_name["all"].prepared_forwarding is prepared


def test_a_policy_that_declares_nothing_sees_everything() -> None:
    """When in doubt, not blind: a new policy without a `Sight` keeps both per-field paths."""
    quiet = Policy(name="new", key="new", build=lambda route, services: object())
    assert quiet.sight is SEES_ALL and quiet.sight == Sight(forwarding=True, response_fields=True)


def test_every_built_in_policy_answers_both_questions() -> None:
    """One mechanism: each policy on the route declares both flags; `blind` answers the forwarding and the rate limit's question."""
    wired = Wired(route=JWT_AND_LIMIT, sections=AUTH)
    route = wired.generation.config.routes[0]
    for policy in POLICIES:
        if policy.runs_on(route):
            sight = policy.sight_on(route, wired.generation.services)
            assert isinstance(sight, Sight) and isinstance(sight.forwarding, bool) and isinstance(sight.response_fields, bool)
    assert blind(route, wired.generation.services, "forwarding")
    assert blind(route, wired.generation.services, "response_fields", outside(rate_limit.POLICY))  # tracing, auth
    assert not blind(route, wired.generation.services, "response_fields")  # the rate limit itself declares nothing of it


def test_a_subclass_of_a_blind_authenticator_is_not_taken_to_be_blind() -> None:
    """Only the class that declares ``reads_forwarding = False`` itself is blind: a package's subclass may read anything."""

    class Reading(JwtAuthenticator):
        pass

    wired = Wired(route=JWT_AND_LIMIT, sections=AUTH)
    route, services = wired.generation.config.routes[0], wired.generation.services
    assert blind(route, services, "forwarding")
    real = services.auth.authenticators["tokens"]
    try:
        real.__class__ = Reading
        assert not blind(route, services, "forwarding")
    finally:
        real.__class__ = JwtAuthenticator
