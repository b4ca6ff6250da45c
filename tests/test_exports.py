"""The top-level names are re-exports of the real objects, and only those (klein's test_exports)."""

import twistgate
from twistgate import errors, exchange, plugins


def test_public_names_are_the_real_objects():
    assert twistgate.hookimpl is plugins.hookimpl
    assert twistgate.Response is exchange.Response
    assert twistgate.GatewayError is errors.GatewayError
    assert twistgate.UpstreamTimeout is errors.UpstreamTimeout


def test_all_is_pinned():
    assert sorted(twistgate.__all__) == sorted(
        [
            "__version__",
            "hookimpl",
            "Response",
            "ProxyRequest",
            "ProxyResponse",
            "GatewayError",
            "BadRequest",
            "Unauthorized",
            "Forbidden",
            "PayloadTooLarge",
            "RateLimited",
            "ServiceUnavailable",
            "UpstreamUnavailable",
            "UpstreamTimeout",
        ]
    )
    for name in twistgate.__all__:
        assert hasattr(twistgate, name)
