"""
The cache in a whole gateway, in memory: one test per rule, against an
origin whose responses carry the headers under test, with a Clock for time.
"""

from __future__ import annotations

import pytest
from twisted.web.server import NOT_DONE_YET

from tests.cache.conftest import DROP, Gateway, Origin
from twistgate.config import ConfigError


def test_miss_then_hit_with_age_date_and_cache_status():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=60"), ("X-Thing", "1")], b"hello")
    first = gw.get()
    sent_date = first.header("Date")
    gw.later(10)
    second = gw.get()
    assert len(gw.origin.seen) == 1
    assert (second.status, second.body, second.header("X-Thing")) == (200, b"hello", "1")
    assert second.header("Age") == "10"
    assert second.header("Date") == sent_date  # a cache never re-dates a stored response
    assert first.cache_status == "twistgate; fwd=uri-miss; fwd-status=200; stored"
    assert second.cache_status == "twistgate; hit; ttl=50"
    assert second.length == 5


def test_the_outcome_is_in_request_state_and_counted():
    gw = Gateway()
    records = []
    gw.harness.generation.observers.append(records.append)
    gw.origin.answer(200, [("Cache-Control", "max-age=60")])
    gw.get()
    gw.get()
    gw.request("POST", "/r", body=b"x")
    assert [r.state.get("cache") for r in records] == ["miss", "hit", "bypass"]
    assert gw.service.stats()["outcomes"] == {"miss": 1, "hit": 1, "bypass": 1}


def test_stale_after_max_age():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=60")])
    gw.get()
    gw.later(60)
    assert gw.get().cache_status.startswith("twistgate; fwd=stale")
    assert len(gw.origin.seen) == 2


@pytest.mark.parametrize(
    "headers, detail",
    [
        ([("Cache-Control", "no-store, max-age=60")], "no-store"),
        ([("Cache-Control", "private, max-age=60")], "private"),
        ([("Cache-Control", "max-age=60"), ("Vary", "*")], "vary-star"),
        ([], "not-reusable"),  # no freshness, no validator
        ([("Cache-Control", "public, max-age=60"), ("Content-Type", "text/event-stream; charset=utf-8")], "event-stream"),
    ],
)
def test_responses_that_must_not_be_stored(headers, detail):
    gw = Gateway()
    gw.origin.answer(200, headers)
    first = gw.get()
    gw.get()
    assert len(gw.origin.seen) == 2
    assert first.cache_status == f"twistgate; fwd=uri-miss; fwd-status=200; detail={detail}"


def test_qualified_no_cache_and_private_strip_the_named_fields():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", 'max-age=60, no-cache="a", private="b"'), ("A", "1"), ("B", "2"), ("C", "3")])
    assert gw.get().header("A") == "1"  # the first client gets everything
    hit = gw.get()
    assert hit.cache_status.startswith("twistgate; hit")
    assert (hit.header("A"), hit.header("B"), hit.header("C")) == (None, None, "3")


def test_no_cache_is_stored_but_validated_on_every_use():
    gw = Gateway()
    gw.origin.reply = lambda seen: (
        (304, [("ETag", '"v1"')], b"") if seen.header("If-None-Match") == '"v1"' else (200, [("Cache-Control", "no-cache, max-age=600"), ("ETag", '"v1"')], b"full")
    )
    gw.get()
    again = gw.get()
    assert len(gw.origin.seen) == 2 and gw.origin.seen[1].header("If-None-Match") == '"v1"'
    assert (again.status, again.body) == (200, b"full")
    assert again.cache_status == "twistgate; fwd=stale; fwd-status=304; ttl=600"


def test_revalidation_with_etag_and_last_modified_then_304_updates_the_entry():
    """RFC 9111 §4.3: both validators are sent; the 304's fields replace the stored ones."""
    gw = Gateway()
    modified = gw.date(-86400)
    gw.origin.answer(200, [("Cache-Control", "max-age=1"), ("ETag", '"v1"'), ("Last-Modified", modified), ("X-Version", "A")], b"stored body")
    gw.get()
    gw.later(5)
    gw.origin.answer(304, [("Cache-Control", "max-age=3600"), ("ETag", '"v1"'), ("X-Version", "B")], b"")
    refreshed = gw.get()
    seen = gw.origin.seen[-1]
    assert seen.header("If-None-Match") == '"v1"' and seen.header("If-Modified-Since") == modified
    assert (refreshed.status, refreshed.body, refreshed.header("X-Version")) == (200, b"stored body", "B")
    assert refreshed.cache_status == "twistgate; fwd=stale; fwd-status=304; ttl=3600"
    gw.later(100)
    hit = gw.get()
    assert (hit.header("X-Version"), hit.header("Age")) == ("B", "100")
    assert len(gw.origin.seen) == 2


def test_must_revalidate_entry_is_revalidated_and_a_200_replaces_it():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=2, must-revalidate"), ("ETag", '"v1"')], b"one")
    gw.get()
    gw.later(3)
    gw.origin.answer(200, [("Cache-Control", "max-age=60"), ("ETag", '"v2"')], b"two")
    assert gw.get().body == b"two"
    assert gw.get().body == b"two" and len(gw.origin.seen) == 2


def test_s_maxage_wins_for_a_shared_cache():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=3600, s-maxage=1")])
    gw.get()
    gw.later(2)
    gw.get()
    assert len(gw.origin.seen) == 2


def test_expires_and_upstream_age_bound_freshness():
    gw = Gateway()
    gw.origin.answer(200, [("Expires", gw.date(100)), ("Age", "90")])
    gw.get()
    gw.later(5)
    assert gw.get().header("Age") == "95"
    gw.later(6)
    gw.get()
    assert len(gw.origin.seen) == 2


def test_heuristic_freshness_only_for_cacheable_statuses():
    gw = Gateway()
    gw.origin.answer(200, [("Last-Modified", gw.date(-1000))])
    gw.get("/ok")
    assert gw.get("/ok").cache_status == "twistgate; hit; ttl=100"
    gw.origin.answer(201, [("Last-Modified", gw.date(-1000))])
    gw.get("/created")
    gw.get("/created")
    assert len(gw.origin.seen) == 3


def test_route_ttl_is_a_default_never_an_override():
    gw = Gateway("{ttl: 30s}")
    gw.origin.reply = lambda seen: {
        "/plain": (200, [], b"p"),
        "/no-store": (200, [("Cache-Control", "no-store")], b"n"),
        "/short": (200, [("Cache-Control", "max-age=5")], b"s"),
        "/created": (201, [], b"c"),
    }[seen.uri]
    for path in ("/plain", "/no-store", "/short", "/created"):
        gw.get(path)
    gw.later(10)
    for path in ("/plain", "/no-store", "/short", "/created"):
        gw.get(path)
    assert [s.uri for s in gw.origin.seen[4:]] == ["/no-store", "/short", "/created"]


def test_authorization_responses_are_shared_only_when_allowed():
    gw = Gateway()
    gw.origin.reply = lambda seen: (200, [("Cache-Control", "max-age=60" + (", public" if "public" in seen.uri else ""))], b"x")
    for path in ("/private", "/public"):
        gw.request("GET", path, [("Authorization", "Bearer a")])
        gw.get(path)
    assert [s.uri for s in gw.origin.seen] == ["/private", "/private", "/public"]


def test_vary_selects_variants():
    gw = Gateway()
    gw.origin.reply = lambda seen: (200, [("Cache-Control", "max-age=60"), ("Vary", "Foo")], (seen.header("Foo") or "none").encode())
    assert gw.get("/r", ("Foo", "1")).body == b"1"
    assert gw.get("/r", ("Foo", "2")).cache_status.startswith("twistgate; fwd=vary-miss")
    assert gw.get("/r").body == b"none"  # omitting the field is its own variant
    assert gw.get("/r", ("Foo", "1")).body == b"1"
    assert gw.get("/r", ("Foo", "2")).body == b"2"
    assert gw.get("/r", ("Foo", "  2 ")).cache_status.startswith("twistgate; hit")  # whitespace normalised
    assert len(gw.origin.seen) == 3


def test_vary_with_several_lines_combines_them():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=60"), ("Vary", "Foo")])
    gw.request("GET", "/r", [("Foo", "1, 2")])
    assert gw.request("GET", "/r", [("Foo", "1"), ("Foo", "2")]).cache_status.startswith("twistgate; hit")


def test_clients_own_conditional_requests_get_304_from_the_store():
    gw = Gateway()
    modified = gw.date(-3000)
    gw.origin.answer(200, [("Cache-Control", "max-age=600"), ("ETag", '"abc"'), ("Last-Modified", modified), ("Content-Type", "text/plain")], b"body")
    gw.get()
    inm = gw.get("/r", ("If-None-Match", 'W/"abc", "other"'))
    assert (inm.status, inm.body, inm.header("ETag")) == (304, b"", '"abc"')
    assert inm.header("Content-Type") is None and inm.header("Age") == "0"
    assert gw.get("/r", ("If-Modified-Since", modified)).status == 304
    assert gw.get("/r", ("If-None-Match", '"nope"'), ("If-Modified-Since", modified)).status == 200
    assert len(gw.origin.seen) == 1


def test_a_stale_entry_answers_the_clients_conditional_after_our_revalidation():
    """Our validators go upstream; the client's If-None-Match is then answered with 304."""
    gw = Gateway()
    gw.origin.reply = lambda seen: (
        (304, [("Cache-Control", "max-age=60")], b"") if seen.header("If-None-Match") == '"v1"' else (200, [("Cache-Control", "max-age=1"), ("ETag", '"v1"')], b"x")
    )
    gw.get()
    gw.later(5)
    got = gw.get("/r", ("If-None-Match", '"v1"'))
    assert got.status == 304
    gw.later(5)
    assert gw.get("/r", ("If-None-Match", '"zzz"')).status == 200


def test_byte_ranges_from_a_stored_response():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=60"), ("ETag", '"s"')], b"0123456789")
    gw.get()
    part = gw.get("/r", ("Range", "bytes=2-4"))
    assert (part.status, part.body, part.header("Content-Range")) == (206, b"234", "bytes 2-4/10")
    assert gw.get("/r", ("Range", "bytes=-1")).body == b"9"
    assert gw.get("/r", ("Range", "bytes=50-")).status == 416
    assert len(gw.origin.seen) == 1


def test_partial_responses_are_not_stored():
    gw = Gateway()
    gw.origin.answer(206, [("Cache-Control", "max-age=60"), ("Content-Range", "bytes 0-1/10")], b"01")
    gw.get("/r", ("Range", "bytes=0-1"))
    gw.get("/r", ("Range", "bytes=0-1"))
    assert len(gw.origin.seen) == 2


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "M-SEARCH"])
def test_unsafe_methods_invalidate_the_uri(method):
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=600")])
    gw.get()
    reply = gw.request(method, "/r", body=b"abc")
    assert reply.cache_status == "twistgate; fwd=method"
    gw.get()
    assert len(gw.origin.seen) == 3


def test_a_failed_unsafe_request_does_not_invalidate():
    gw = Gateway()
    gw.origin.reply = lambda seen: (500, [], b"") if seen.method == "POST" else (200, [("Cache-Control", "max-age=600")], b"x")
    gw.get()
    gw.request("POST", "/r", body=b"abc")
    assert gw.get().cache_status.startswith("twistgate; hit")


def test_location_and_content_location_of_the_same_origin_are_invalidated():
    gw = Gateway()
    gw.origin.reply = lambda seen: (
        (201, [("Location", "/items/1"), ("Content-Location", "http://gw.test/items/2"), ("Link", "x")], b"")
        if seen.method == "POST"
        else (200, [("Cache-Control", "max-age=600")], b"x")
    )
    for path in ("/items/1", "/items/2", "/items/3"):
        gw.get(path)
    gw.request("POST", "/items/new", body=b"{}")
    for path in ("/items/1", "/items/2", "/items/3"):
        gw.get(path)
    assert [s.uri for s in gw.origin.seen[4:]] == ["/items/1", "/items/2"]


def test_another_origins_location_is_left_alone():
    gw = Gateway()
    gw.origin.reply = lambda seen: (
        (201, [("Location", "http://elsewhere.test/items/1")], b"") if seen.method == "POST" else (200, [("Cache-Control", "max-age=600")], b"x")
    )
    gw.get("/items/1")
    gw.request("POST", "/items", body=b"{}")
    assert gw.get("/items/1").cache_status.startswith("twistgate; hit")


def test_a_write_route_without_cache_still_invalidates_its_upstreams_entries():
    gw = Gateway(routes='  - {name: writes, path: "/r", methods: [POST], upstream: app}')
    gw.origin.answer(200, [("Cache-Control", "max-age=600")])
    gw.get()
    gw.request("POST", "/r", body=b"x")
    gw.get()
    assert [s.method for s in gw.origin.seen] == ["GET", "POST", "GET"]


def test_concurrent_misses_collapse_into_one_fetch():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=60")], b"shared")
    gw.origin.hold()
    pending = [gw.start() for _ in range(3)]
    assert len(gw.origin.seen) == 1 and gw.service.leases.holder((("app", "http", "gw.test", "/r", b""), ())).waiting == 2
    gw.origin.release()
    gw.flush()
    results = [[] for _ in pending]
    for d, out in zip(pending, results):
        d.addCallback(out.append)
    got = [out[0] for out in results]
    assert [g.body for g in got] == [b"shared"] * 3
    assert got[0].cache_status.endswith("stored") and all("collapsed" in g.cache_status for g in got[1:])
    assert len(gw.origin.seen) == 1 and len(gw.service.leases) == 0


def test_followers_of_an_uncacheable_response_go_upstream_themselves():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "no-store")], b"mine")
    gw.origin.hold()
    pending = [gw.start() for _ in range(3)]
    assert len(gw.origin.seen) == 1
    gw.origin.release()
    gw.flush()
    assert len(gw.origin.seen) == 3  # released at the leader's head: they went upstream
    gw.origin.release()
    gw.flush()
    done = []
    for d in pending:
        d.addCallback(done.append)
    assert [g.body for g in done] == [b"mine"] * 3


def test_collapse_can_be_turned_off():
    gw = Gateway("{collapse: false}")
    gw.origin.answer(200, [("Cache-Control", "max-age=60")])
    gw.origin.hold()
    for _ in range(3):
        gw.start()
    assert len(gw.origin.seen) == 3
    gw.origin.release()


def test_a_leader_whose_client_leaves_releases_its_followers():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=60")], b"x")
    gw.origin.hold()
    leader = gw.start()
    follower = gw.start()
    assert len(gw.origin.seen) == 1
    leader.cancel()  # the leader's client goes away while its request is upstream
    gone = []
    leader.addErrback(gone.append)  # its failure is the cancellation, consumed here (not "unhandled" at GC)
    gw.flush()
    assert len(gone) == 1
    assert len(gw.service.leases) == 0
    assert len(gw.origin.seen) == 2  # the follower went upstream by itself
    gw.origin.release()
    gw.flush()
    got = []
    follower.addCallback(got.append)
    assert got[0].body == b"x"


def test_stale_while_revalidate_serves_stale_and_refreshes_in_the_background():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=1, stale-while-revalidate=60"), ("ETag", '"abc"')], b"old")
    gw.get()
    gw.later(10)
    gw.origin.answer(200, [("Cache-Control", "max-age=3600"), ("ETag", '"def"')], b"new")
    stale = gw.get()
    assert (stale.body, stale.header("ETag")) == (b"old", '"abc"')
    assert stale.cache_status == "twistgate; hit; ttl=-9; detail=stale-while-revalidate"
    assert gw.origin.seen[-1].header("If-None-Match") == '"abc"'
    fresh = gw.get()
    assert (fresh.body, fresh.header("ETag"), fresh.cache_status) == (b"new", '"def"', "twistgate; hit; ttl=3600")
    assert len(gw.origin.seen) == 2


def test_stale_while_revalidate_304_refreshes_the_entry():
    gw = Gateway("{stale_while_revalidate: 1m}")  # the route default, no directive
    gw.origin.answer(200, [("Cache-Control", "max-age=1"), ("ETag", '"abc"')], b"old")
    gw.get()
    gw.later(10)
    gw.origin.answer(304, [("Cache-Control", "max-age=100")], b"")
    assert gw.get().body == b"old"
    assert gw.get().cache_status == "twistgate; hit; ttl=100"


def test_stale_if_error_on_a_5xx_within_the_window_only():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=0, stale-if-error=60")], b"good")
    gw.get()
    gw.later(30)
    gw.origin.answer(503, [], b"down")
    saved = gw.get()
    assert (saved.status, saved.body) == (200, b"good")
    assert saved.cache_status == "twistgate; fwd=stale; fwd-status=503; ttl=-30; detail=stale-if-error"
    gw.later(31)
    assert gw.get().status == 503


def test_stale_if_error_when_the_upstream_breaks_the_connection():
    gw = Gateway("{stale_if_error: 1m}")
    gw.origin.answer(200, [("Cache-Control", "max-age=1")], b"good")
    gw.get()
    gw.later(10)
    gw.origin.reply = lambda seen: DROP
    saved = gw.get()
    assert (saved.status, saved.body) == (200, b"good")
    assert saved.cache_status == "twistgate; fwd=stale; ttl=-9; detail=stale-if-error"


def test_must_revalidate_is_never_served_stale_even_on_errors():
    gw = Gateway("{stale_if_error: 1m}")
    gw.origin.answer(200, [("Cache-Control", "max-age=1, must-revalidate, stale-if-error=60")], b"good")
    gw.get()
    gw.later(10)
    gw.origin.answer(500, [], b"down")
    assert gw.get().status == 500


def test_only_if_cached_without_a_stored_response_is_504():
    gw = Gateway()
    got = gw.get("/r", ("Cache-Control", "only-if-cached"))
    assert got.status == 504 and b"not_cached" in got.body
    assert gw.origin.seen == []


@pytest.mark.parametrize(
    "cc, reaches_origin",
    [("no-cache", True), ("max-age=0", True), ("min-fresh=100", True), ("max-age=100", False), ("no-store", True)],
)
def test_request_directives_are_honoured(cc, reaches_origin):
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=60")])
    gw.get()
    gw.later(1)
    gw.get("/r", ("Cache-Control", cc))
    assert (len(gw.origin.seen) == 2) is reaches_origin


def test_max_stale_accepts_a_stale_response():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=1")])
    gw.get()
    gw.later(10)
    assert gw.get("/r", ("Cache-Control", "max-stale=100")).cache_status == "twistgate; hit; ttl=-9"


def test_client_directives_can_be_ignored():
    gw = Gateway("{client_directives: false}")
    gw.origin.answer(200, [("Cache-Control", "max-age=60")])
    gw.get()
    gw.get("/r", ("Cache-Control", "no-cache"))
    assert len(gw.origin.seen) == 1


def test_memory_is_bounded_with_lru_eviction():
    gw = Gateway("{max_object_size: 4KiB}", extra="cache: {max_memory: 10KiB}")
    gw.origin.answer(200, [("Cache-Control", "max-age=600")], b"x" * 3000)
    for n in range(10):
        gw.get(f"/{n}")
        assert gw.service.store.bytes <= 10 * 1024
    assert gw.service.stats()["evictions"] >= 7
    gw.get("/9")
    gw.get("/0")
    assert [s.uri for s in gw.origin.seen[10:]] == ["/0"]


def test_too_large_responses_are_not_stored_declared_or_streamed():
    gw = Gateway("{max_object_size: 100}")
    gw.origin.answer(200, [("Cache-Control", "max-age=600")], b"x" * 101)
    assert gw.get("/big").cache_status.endswith("detail=size")
    gw.get("/big")
    assert len(gw.origin.seen) == 2


def test_head_is_answered_from_a_stored_get_and_not_stored_itself():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=60")], b"12345")
    head = gw.request("HEAD", "/h")
    assert head.header("Cache-Status").endswith("fwd-status=200")
    gw.get("/h")
    head = gw.request("HEAD", "/h")
    assert (head.status, head.body) == (200, b"")
    assert head.cache_status.startswith("twistgate; hit")
    assert [s.method for s in gw.origin.seen] == ["HEAD", "GET"]


def test_key_headers_and_query_are_part_of_the_key():
    gw = Gateway("{key_headers: [X-Tenant]}")
    gw.origin.answer(200, [("Cache-Control", "max-age=60")])
    gw.get("/r?a=1", ("X-Tenant", "a"))
    gw.get("/r?a=1", ("X-Tenant", "b"))
    gw.get("/r?a=2", ("X-Tenant", "a"))
    gw.get("/r?a=1", ("X-Tenant", "a"))
    assert len(gw.origin.seen) == 3


def test_requests_with_preconditions_bypass():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=60")])
    gw.get()
    assert gw.get("/r", ("If-Match", '"x"')).cache_status == "twistgate; fwd=bypass"
    assert len(gw.origin.seen) == 2


def test_cache_status_name_is_configurable():
    gw = Gateway(extra="cache: {status_name: edge-1}")
    gw.origin.answer(200, [("Cache-Control", "max-age=60"), ("Cache-Status", "origin-cache; hit")])
    gw.get()
    assert gw.get().all("Cache-Status") == ["origin-cache; hit", "edge-1; hit; ttl=60"]


class Truncating(Origin):
    """Declares 10 bytes, sends 4, then breaks the connection."""

    def render(self, request):
        self.seen.append(request)
        request.setHeader(b"Cache-Control", b"max-age=60")
        request.setHeader(b"Content-Length", b"10")
        request.write(b"0123")
        request.channel.transport.abortConnection()
        return NOT_DONE_YET


def test_an_incomplete_body_is_never_stored():
    gw = Gateway(origin=Truncating(None))
    gw.start()
    gw.flush()
    gw.start()
    gw.flush()
    assert len(gw.origin.seen) == 2 and len(gw.service.store) == 0
    assert len(gw.service.leases) == 0


def test_config_errors_point_at_the_section():
    with pytest.raises(ConfigError) as error:
        Gateway("{methods: [GET, POST], ttl: 10, max_variants: 0, colapse: true}")
    text = str(error.value)
    assert "routes[0].cache.methods[1]: only GET and HEAD responses are cached, got 'POST'" in text
    assert "routes[0].cache.ttl: a duration needs a unit" in text
    assert "routes[0].cache.max_variants: must be at least 1" in text
    assert "unknown key 'colapse'; did you mean 'collapse'?" in text
    with pytest.raises(ConfigError) as error:
        Gateway("{max_object_size: 2MiB}", extra="cache: {max_memory: 1MiB}")
    assert "routes[0].cache: max_object_size (2097152 bytes) is larger than the cache's max_memory" in str(error.value)


def test_a_follower_waits_at_most_collapse_timeout():
    gw = Gateway("{collapse_timeout: 2s}")
    gw.origin.answer(200, [("Cache-Control", "max-age=60")], b"x")
    gw.origin.hold()
    gw.start()
    gw.start()
    assert len(gw.origin.seen) == 1
    gw.later(2)
    gw.flush()
    assert len(gw.origin.seen) == 2  # stopped waiting, went upstream alone
    gw.origin.release()
    gw.flush()


@pytest.fixture
def consumer_stage(monkeypatch):
    """A stage before the cache that authenticates everyone as `alice` (and drops Authorization, as auth does)."""
    from twistgate.config._node import Node
    from twistgate.plugins import hookimpl
    from twistgate.policies import Policy
    from tests.policy_helpers import add_policy, reset_sections

    class Alice:
        @hookimpl
        def on_request(self, request):
            request.consumer = request.headers.getRawHeaders(b"X-Who", [b"alice"])[0].decode()
            request.headers.removeHeader(b"Authorization")

    add_policy(monkeypatch, Policy(name="whoami", key="whoami", parse=Node.boolean, build=lambda route, services: Alice()), before="auth")
    yield
    reset_sections()


def test_responses_to_authenticated_consumers_are_not_shared(consumer_stage):
    gw = Gateway(route_extra=", whoami: true")
    gw.origin.answer(200, [("Cache-Control", "max-age=60")])
    first = gw.get("/r", ("Authorization", "Bearer secret"))
    gw.get("/r")
    assert first.cache_status.endswith("detail=authorization") and len(gw.origin.seen) == 2


def test_key_consumer_gives_each_consumer_its_own_entry(consumer_stage):
    gw = Gateway("{key_consumer: true}", route_extra=", whoami: true")
    gw.origin.answer(200, [("Cache-Control", "max-age=60")])
    gw.get("/r", ("X-Who", "alice"))
    gw.get("/r", ("X-Who", "bob"))
    assert gw.get("/r", ("X-Who", "alice")).cache_status.startswith("twistgate; hit")
    assert len(gw.origin.seen) == 2


def test_a_websocket_handshake_is_never_answered_from_the_cache():
    """A stored GET for the same URL must not answer an upgrade (the exchange marks it: state["upgrade"])."""
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=600")])
    gw.get("/ws")
    assert gw.get("/ws").cache_status.startswith("twistgate; hit")
    handshake = gw.get("/ws", ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"))
    # Past the cache; this in-memory front (twisted.web's) cannot take a connection over: 501, not the stored 200.
    assert handshake.status == 501
    assert len(gw.origin.seen) == 1
