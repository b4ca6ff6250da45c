"""`twistgate.engine` re-exports the real objects, and only those."""

import twistgate.engine as engine
from twistgate import reasons as status
from twistgate.engine import errors, http1_server, limits, pool, request, response


def test_engine_names_are_the_real_objects():
    assert engine.HTTP1ServerFactory is http1_server.HTTP1ServerFactory
    assert engine.ServerLimits is limits.ServerLimits
    assert engine.ServerRequest is request.ServerRequest
    assert engine.UpstreamPool is pool.UpstreamPool
    assert engine.UpstreamResponse is response.UpstreamResponse
    assert engine.UpstreamClosedConnection is errors.UpstreamClosedConnection
    assert engine.REASONS is status.REASONS


def test_engine_all_is_pinned():
    assert sorted(engine.__all__) == sorted(
        [
            "HTTP1ServerFactory", "HTTP1ServerProtocol", "REASONS", "ResponseBodyStopped", "ResponseBodyTruncated",
            "ServerLimits", "ServerRequest", "UpstreamClosedConnection", "UpstreamConnectionError", "UpstreamPool",
            "UpstreamProtocolError", "UpstreamResponse", "reason_for",
        ]
    )  # fmt: skip
    for name in engine.__all__:
        assert hasattr(engine, name)


def test_product_code_does_not_import_twisted_testing_or_private_web_modules():
    import pathlib

    for path in pathlib.Path(engine.__file__).parent.glob("*.py"):
        text = path.read_text()
        for banned in ("twisted.internet.testing", "_newclient", "twisted.web.server", "HTTPChannel"):
            assert banned not in text, (path.name, banned)
