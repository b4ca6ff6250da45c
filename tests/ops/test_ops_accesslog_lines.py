"""
The exact bytes of access lines for odd values: non-ASCII and control
characters, missing fields, HTTP/2, gRPC, WebSocket, errors, rounding at the
edges of a millisecond and a second.  Pinned literally (not compared with
json.dumps), so a faster formatter cannot drift from today's lines.
"""

from __future__ import annotations

import re

import pytest
from twisted.web.resource import Resource

from tests.ops.helpers import access_record as record
from tests.ops.helpers import yaml
from twistgate.config import load_text
from twistgate.ops.accesslog import json_line, text_line
from twistgate.ops.tracing import NewTrace, TraceContext
from twistgate.testing import GatewayHarness


LINES = [
    pytest.param(
        {},
        '{"time":"2023-11-14T22:13:20.262Z","request_id":"r-1","method":"GET","path":"/p","route":"r","status":200,"error":null,"bytes_in":0,"bytes_out":10,"duration_ms":12.5,"upstream":"app","upstream_target":"http://app","upstream_duration_ms":10.1,"retries":0,"client_ip":"203.0.113.9","consumer":"alice","cache":null,"client_gone":false,"protocol":"HTTP/1.1","grpc_status":null,"trace_id":null}\n',
        '203.0.113.9 - alice [2023-11-14T22:13:20.262Z] "GET /p" 200 10 12.5ms route=r target=http://app retries=0 cache=- error=- proto=HTTP/1.1 id=r-1\n',
        id='plain',
    ),
    pytest.param(
        {'path': '/café/☃/😀'},
        '{"time":"2023-11-14T22:13:20.262Z","request_id":"r-1","method":"GET","path":"/café/☃/😀","route":"r","status":200,"error":null,"bytes_in":0,"bytes_out":10,"duration_ms":12.5,"upstream":"app","upstream_target":"http://app","upstream_duration_ms":10.1,"retries":0,"client_ip":"203.0.113.9","consumer":"alice","cache":null,"client_gone":false,"protocol":"HTTP/1.1","grpc_status":null,"trace_id":null}\n',
        '203.0.113.9 - alice [2023-11-14T22:13:20.262Z] "GET /café/☃/😀" 200 10 12.5ms route=r target=http://app retries=0 cache=- error=- proto=HTTP/1.1 id=r-1\n',
        id='non_ascii_path',
    ),
    pytest.param(
        {'path': '/a"b\\c\x01\x1f\x7f\u2028', 'consumer': 'ev"il\n\t\x00'},
        '{"time":"2023-11-14T22:13:20.262Z","request_id":"r-1","method":"GET","path":"/a\\"b\\\\c\\u0001\\u001f\x7f\u2028","route":"r","status":200,"error":null,"bytes_in":0,"bytes_out":10,"duration_ms":12.5,"upstream":"app","upstream_target":"http://app","upstream_duration_ms":10.1,"retries":0,"client_ip":"203.0.113.9","consumer":"ev\\"il\\n\\t\\u0000","cache":null,"client_gone":false,"protocol":"HTTP/1.1","grpc_status":null,"trace_id":null}\n',
        '203.0.113.9 - ev"il\n\t\x00 [2023-11-14T22:13:20.262Z] "GET /a"b\\c\x01\x1f\x7f\u2028" 200 10 12.5ms route=r target=http://app retries=0 cache=- error=- proto=HTTP/1.1 id=r-1\n',
        id='quotes_and_control_characters',
    ),
    pytest.param(
        {'route': None, 'upstream': None, 'target': None, 'attempts': 0, 'upstream_head_seconds': None, 'status': 404, 'error': 'route_not_found', 'consumer': None},
        '{"time":"2023-11-14T22:13:20.262Z","request_id":"r-1","method":"GET","path":"/p","route":null,"status":404,"error":"route_not_found","bytes_in":0,"bytes_out":10,"duration_ms":12.5,"upstream":null,"upstream_target":null,"upstream_duration_ms":null,"retries":0,"client_ip":"203.0.113.9","consumer":null,"cache":null,"client_gone":false,"protocol":"HTTP/1.1","grpc_status":null,"trace_id":null}\n',
        '203.0.113.9 - - [2023-11-14T22:13:20.262Z] "GET /p" 404 10 12.5ms route=- target=- retries=0 cache=- error=route_not_found proto=HTTP/1.1 id=r-1\n',
        id='no_route',
    ),
    pytest.param(
        {'status': 0, 'client_gone': True, 'bytes_out': 0, 'error': 'upstream_timeout', 'attempts': 3},
        '{"time":"2023-11-14T22:13:20.262Z","request_id":"r-1","method":"GET","path":"/p","route":"r","status":0,"error":"upstream_timeout","bytes_in":0,"bytes_out":0,"duration_ms":12.5,"upstream":"app","upstream_target":"http://app","upstream_duration_ms":10.1,"retries":2,"client_ip":"203.0.113.9","consumer":"alice","cache":null,"client_gone":true,"protocol":"HTTP/1.1","grpc_status":null,"trace_id":null}\n',
        '203.0.113.9 - alice [2023-11-14T22:13:20.262Z] "GET /p" 0 0 12.5ms route=r target=http://app retries=2 cache=- error=upstream_timeout proto=HTTP/1.1 id=r-1\n',
        id='client_gone_with_an_error',
    ),
    pytest.param(
        {'protocol': 'HTTP/2', 'grpc_status': 14, 'state': {'cache': 'HIT', 'trace': TraceContext(trace_id='abababababababababababababababab', span_id='cdcdcdcdcdcdcdcd', parent_id=None, flags=1, tracestate=None)}},
        '{"time":"2023-11-14T22:13:20.262Z","request_id":"r-1","method":"GET","path":"/p","route":"r","status":200,"error":null,"bytes_in":0,"bytes_out":10,"duration_ms":12.5,"upstream":"app","upstream_target":"http://app","upstream_duration_ms":10.1,"retries":0,"client_ip":"203.0.113.9","consumer":"alice","cache":"HIT","client_gone":false,"protocol":"HTTP/2","grpc_status":14,"trace_id":"abababababababababababababababab"}\n',
        '203.0.113.9 - alice [2023-11-14T22:13:20.262Z] "GET /p" 200 10 12.5ms route=r target=http://app retries=0 cache=HIT error=- proto=HTTP/2 grpc_status=14 id=r-1\n',
        id='http2_grpc_cache_trace',
    ),
    pytest.param(
        {'state': {'trace': NewTrace(b'00-' + b'ef' * 16 + b'-' + b'12' * 8 + b'-01')}},
        '{"time":"2023-11-14T22:13:20.262Z","request_id":"r-1","method":"GET","path":"/p","route":"r","status":200,"error":null,"bytes_in":0,"bytes_out":10,"duration_ms":12.5,"upstream":"app","upstream_target":"http://app","upstream_duration_ms":10.1,"retries":0,"client_ip":"203.0.113.9","consumer":"alice","cache":null,"client_gone":false,"protocol":"HTTP/1.1","grpc_status":null,"trace_id":"efefefefefefefefefefefefefefefef"}\n',
        '203.0.113.9 - alice [2023-11-14T22:13:20.262Z] "GET /p" 200 10 12.5ms route=r target=http://app retries=0 cache=- error=- proto=HTTP/1.1 id=r-1\n',
        id='a_new_trace',
    ),
    pytest.param(
        {'status': 101, 'upstream_head_seconds': 0.002, 'finished': 1700003600.999999, 'state': {'websocket': {'close_code': 1000, 'closed_by': 'client'}}},
        '{"time":"2023-11-14T23:13:20.999Z","request_id":"r-1","method":"GET","path":"/p","route":"r","status":101,"error":null,"bytes_in":0,"bytes_out":10,"duration_ms":3600749.999,"upstream":"app","upstream_target":"http://app","upstream_duration_ms":2.0,"retries":0,"client_ip":"203.0.113.9","consumer":"alice","cache":null,"client_gone":false,"protocol":"HTTP/1.1","grpc_status":null,"trace_id":null,"websocket_close_code":1000,"websocket_closed_by":"client"}\n',
        '203.0.113.9 - alice [2023-11-14T23:13:20.999Z] "GET /p" 101 10 3600749.999ms route=r target=http://app retries=0 cache=- error=- proto=HTTP/1.1 ws_close=1000 ws_closed_by=client id=r-1\n',
        id='websocket_closed_by_the_client',
    ),
    pytest.param(
        {'status': 101, 'state': {'websocket': {'close_code': None, 'closed_by': 'reset'}}},
        '{"time":"2023-11-14T22:13:20.262Z","request_id":"r-1","method":"GET","path":"/p","route":"r","status":101,"error":null,"bytes_in":0,"bytes_out":10,"duration_ms":12.5,"upstream":"app","upstream_target":"http://app","upstream_duration_ms":10.1,"retries":0,"client_ip":"203.0.113.9","consumer":"alice","cache":null,"client_gone":false,"protocol":"HTTP/1.1","grpc_status":null,"trace_id":null,"websocket_close_code":null,"websocket_closed_by":"reset"}\n',
        '203.0.113.9 - alice [2023-11-14T22:13:20.262Z] "GET /p" 101 10 12.5ms route=r target=http://app retries=0 cache=- error=- proto=HTTP/1.1 ws_close=None ws_closed_by=reset id=r-1\n',
        id='websocket_reset',
    ),
    pytest.param(
        {'started': 1700000000.0, 'finished': 1700000001.0005, 'upstream_head_seconds': 0.12345678, 'bytes_in': 123456789, 'method': 'PURGE', 'protocol': 'HTTP/1.0'},
        '{"time":"2023-11-14T22:13:21.000Z","request_id":"r-1","method":"PURGE","path":"/p","route":"r","status":200,"error":null,"bytes_in":123456789,"bytes_out":10,"duration_ms":1000.5,"upstream":"app","upstream_target":"http://app","upstream_duration_ms":123.457,"retries":0,"client_ip":"203.0.113.9","consumer":"alice","cache":null,"client_gone":false,"protocol":"HTTP/1.0","grpc_status":null,"trace_id":null}\n',
        '203.0.113.9 - alice [2023-11-14T22:13:21.000Z] "PURGE /p" 200 10 1000.5ms route=r target=http://app retries=0 cache=- error=- proto=HTTP/1.0 id=r-1\n',
        id='other_method_http10_big_counts',
    ),
    pytest.param(
        {'finished': 1700000000.9999995, 'started': 1700000000.9999995},
        '{"time":"2023-11-14T22:13:21.000Z","request_id":"r-1","method":"GET","path":"/p","route":"r","status":200,"error":null,"bytes_in":0,"bytes_out":10,"duration_ms":0.0,"upstream":"app","upstream_target":"http://app","upstream_duration_ms":10.1,"retries":0,"client_ip":"203.0.113.9","consumer":"alice","cache":null,"client_gone":false,"protocol":"HTTP/1.1","grpc_status":null,"trace_id":null}\n',
        '203.0.113.9 - alice [2023-11-14T22:13:21.000Z] "GET /p" 200 10 0.0ms route=r target=http://app retries=0 cache=- error=- proto=HTTP/1.1 id=r-1\n',
        id='time_rounding_to_the_next_second',
    ),
    pytest.param(
        {'finished': 1700000000.0, 'started': 1700000001.0, 'upstream_head_seconds': -0.5, 'state': None},
        '{"time":"2023-11-14T22:13:20.000Z","request_id":"r-1","method":"GET","path":"/p","route":"r","status":200,"error":null,"bytes_in":0,"bytes_out":10,"duration_ms":0.0,"upstream":"app","upstream_target":"http://app","upstream_duration_ms":-500.0,"retries":0,"client_ip":"203.0.113.9","consumer":"alice","cache":null,"client_gone":false,"protocol":"HTTP/1.1","grpc_status":null,"trace_id":null}\n',
        '203.0.113.9 - alice [2023-11-14T22:13:20.000Z] "GET /p" 200 10 0.0ms route=r target=http://app retries=0 cache=- error=- proto=HTTP/1.1 id=r-1\n',
        id='negative_durations_no_state',
    ),
]


@pytest.mark.parametrize("changes, json_text, text", LINES)
def test_the_exact_lines_of_odd_records(changes, json_text, text):
    one = record(**changes)
    assert json_line(one) == json_text
    assert text_line(one) == text


class Upstream(Resource):
    isLeaf = True

    def render(self, request):
        return b"0123456789"


def test_the_exact_lines_a_gateway_writes(tmp_path):
    """Through the gateway: a path as the client sent it, a query never logged, an error of its own."""
    log = tmp_path / "access.log"
    config = yaml(
        f"""
        listeners: [{{name: p, endpoint: "tcp:0"}}]
        upstreams: {{app: {{targets: [{{url: "http://app:80"}}]}}}}
        routes:
          - {{name: r, path: "/r/*", upstream: app}}
        access_log: {{path: {log}, flush_interval: 0s}}
        """
    )
    gw = GatewayHarness(load_text(config), Upstream())
    gw.generation.start()
    gw.clock.advance(1700000000.5)
    gw.content(gw.request("GET", "http://gw/r/caf%C3%A9/%22q%22?token=secret", headers={"X-Request-ID": "req-1"}))
    gw.content(gw.request("GET", "http://gw/missing", headers={"X-Request-ID": "req-2"}))
    gw.generation.stop()
    written = re.sub(r'"trace_id":"[0-9a-f]{32}"', '"trace_id":"T"', log.read_text(encoding="utf-8"))
    assert written.splitlines(keepends=True) == [
        '{"time":"2023-11-14T22:13:20.500Z","request_id":"req-1","method":"GET","path":"/r/caf%C3%A9/%22q%22",'
        '"route":"r","status":200,"error":null,"bytes_in":0,"bytes_out":10,"duration_ms":0.0,"upstream":"app",'
        '"upstream_target":"http://app","upstream_duration_ms":0.0,"retries":0,"client_ip":"127.0.0.1",'
        '"consumer":null,"cache":null,"client_gone":false,"protocol":"HTTP/1.1","grpc_status":null,"trace_id":"T"}\n',
        '{"time":"2023-11-14T22:13:20.500Z","request_id":"req-2","method":"GET","path":"/missing","route":null,'
        '"status":404,"error":"route_not_found","bytes_in":0,"bytes_out":91,"duration_ms":0.0,"upstream":null,'
        '"upstream_target":null,"upstream_duration_ms":null,"retries":0,"client_ip":"127.0.0.1","consumer":null,'
        '"cache":null,"client_gone":false,"protocol":"HTTP/1.1","grpc_status":null,"trace_id":null}\n',
    ]
