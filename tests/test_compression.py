"""
Response compression: negotiated with Accept-Encoding, skipped where it
would be wrong (encoded, no-transform, ranges, event streams, small
bodies), applied per client after the cache.
"""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from tests.cache.conftest import Gateway
from twistgate.policies.compression import _Brotli, _Gzip, accepted_codings
from twistgate.config import ConfigError

JSON = [("Content-Type", "application/json"), ("ETag", '"e1"')]
BODY = b'{"items": [' + b'{"name": "twistgate", "n": 1}, ' * 200 + b"{}]}"


def compressing(extra: str = ", compression: true", cache=None, **kwargs) -> Gateway:
    return Gateway(cache, route_extra=extra, **kwargs)


def test_gzip_when_asked():
    gw = compressing()
    gw.origin.answer(200, JSON, BODY)
    got = gw.get("/r", ("Accept-Encoding", "gzip"))
    assert got.header("Content-Encoding") == "gzip"
    assert gzip.decompress(got.body) == BODY
    assert len(got.body) < len(BODY) / 5
    assert got.header("Vary") == "Accept-Encoding"
    assert got.header("ETag") == 'W/"e1"'  # another representation: the strong tag would lie
    assert got.header("Content-Length") is None


def test_brotli_is_preferred_on_ties_and_weights_decide_otherwise():
    gw = compressing()
    gw.origin.answer(200, JSON, BODY)
    got = gw.get("/r", ("Accept-Encoding", "gzip, deflate, br"))
    assert got.header("Content-Encoding") == "br" and brotli.decompress(got.body) == BODY
    assert gw.get("/r", ("Accept-Encoding", "br;q=0.5, gzip")).header("Content-Encoding") == "gzip"
    assert gw.get("/r", ("Accept-Encoding", "*")).header("Content-Encoding") == "br"
    assert gw.get("/r", ("Accept-Encoding", "br;q=0, *;q=0.1")).header("Content-Encoding") == "gzip"


@pytest.mark.parametrize("accept", [None, "identity", "gzip;q=0, br;q=0", "deflate"])
def test_identity_when_nothing_we_have_is_acceptable(accept):
    gw = compressing()
    gw.origin.answer(200, JSON, BODY)
    got = gw.get("/r", *([("Accept-Encoding", accept)] if accept else []))
    assert got.header("Content-Encoding") is None and got.body == BODY
    assert got.header("Vary") == "Accept-Encoding"  # the answer still depended on the field
    assert got.header("ETag") == '"e1"'


@pytest.mark.parametrize(
    "headers, request_headers",
    [
        ([("Content-Type", "application/json"), ("Content-Encoding", "gzip")], []),  # never twice
        ([("Content-Type", "application/json"), ("Cache-Control", "no-transform")], []),
        ([("Content-Type", "text/event-stream")], []),
        ([("Content-Type", "image/png")], []),
        ([], []),  # no type: we do not guess
        ([("Content-Type", "application/json")], [("Range", "bytes=0-10")]),
    ],
)
def test_skipped(headers, request_headers):
    gw = compressing()
    gw.origin.answer(200, headers, BODY)
    got = gw.get("/r", ("Accept-Encoding", "gzip"), *request_headers)
    assert got.body == BODY  # passed through untouched
    assert got.header("Content-Encoding") == dict(headers).get("Content-Encoding")


def test_small_bodies_are_left_alone():
    gw = compressing(", compression: {min_size: 100}")
    gw.origin.answer(200, JSON, b"x" * 99)
    got = gw.get("/r", ("Accept-Encoding", "gzip"))
    assert got.header("Content-Encoding") is None and got.header("Vary") is None


def test_head_and_no_body_statuses_are_left_alone():
    gw = compressing()
    gw.origin.answer(204, JSON, b"")
    assert gw.get("/r", ("Accept-Encoding", "gzip")).header("Content-Encoding") is None
    gw.origin.answer(200, JSON, BODY)
    assert gw.request("HEAD", "/r", [("Accept-Encoding", "gzip")]).header("Content-Encoding") is None


def test_an_existing_vary_is_extended_not_duplicated():
    gw = compressing()
    gw.origin.answer(200, JSON + [("Vary", "Origin")], BODY)
    assert gw.get("/r", ("Accept-Encoding", "gzip")).all("Vary") == ["Origin", "Accept-Encoding"]
    gw.origin.answer(200, JSON + [("Vary", "origin, accept-encoding")], BODY)
    assert gw.get("/r", ("Accept-Encoding", "gzip")).all("Vary") == ["origin, accept-encoding"]


def test_the_cache_stores_identity_and_each_client_gets_its_own_coding():
    gw = compressing(cache="{}")
    gw.origin.answer(200, JSON + [("Cache-Control", "max-age=60")], BODY)
    first = gw.get("/r", ("Accept-Encoding", "br"))
    plain = gw.get("/r")
    zipped = gw.get("/r", ("Accept-Encoding", "gzip"))
    assert len(gw.origin.seen) == 1
    assert brotli.decompress(first.body) == BODY
    assert plain.body == BODY and plain.header("Content-Encoding") is None
    assert gzip.decompress(zipped.body) == BODY and zipped.cache_status.startswith("twistgate; hit")
    assert gw.service.store.bytes > len(BODY)  # the stored body is the identity one


def test_streamed_chunks_are_flushed_as_they_pass():
    """A chunk in, a decodable chunk out: compression never holds a stream back."""
    gz, unzip = _Gzip(5), zlib.decompressobj(31)
    assert unzip.decompress(gz.write(b"event one\n")) == b"event one\n"
    assert unzip.decompress(gz.write(b"event two\n")) == b"event two\n"
    assert unzip.decompress(gz.finish()) == b"" and unzip.eof
    br, unbrotli = _Brotli(4), brotli.Decompressor()
    assert unbrotli.process(br.write(b"event one\n")) == b"event one\n"
    assert unbrotli.process(br.finish()) == b"" and unbrotli.is_finished()


def test_accept_encoding_parsing():
    assert accepted_codings([b"gzip;q=0.5, BR , x-gzip;q=1, foo;q=bad"]) == {"gzip": 0.5, "br": 1.0, "foo": 0.0}


def test_top_level_compression_is_the_default_and_a_route_can_opt_out():
    gw = Gateway(
        None,
        extra="compression: {algorithms: [gzip]}",
        route_extra="",
        routes='  - {name: raw, path: "/raw", upstream: app, compression: false}',
    )
    gw.origin.answer(200, JSON, BODY)
    assert gw.get("/r", ("Accept-Encoding", "gzip, br")).header("Content-Encoding") == "gzip"
    assert gw.get("/raw", ("Accept-Encoding", "gzip, br")).header("Content-Encoding") is None


def test_config_is_checked():
    with pytest.raises(ConfigError) as error:
        compressing(", compression: {algorithms: [zstd], gzip_level: 10, types: [json]}")
    text = str(error.value)
    assert "compression.algorithms[0]: unknown value 'zstd'" in text
    assert "compression.gzip_level: must be at most 9, got 10" in text
    assert "compression.types[0]: expected a media type like text/* or application/json, got 'json'" in text
