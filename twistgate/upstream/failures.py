"""
What went wrong with an upstream attempt, in the words retries, breakers and
outlier detection use, and the error the client sees for it.
"""

from __future__ import annotations

from typing import Optional, Tuple

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectError, ConnectingCancelledError, ConnectionDone, ConnectionLost, DNSLookupError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.python.failure import Failure
from twisted.web.client import ResponseNeverReceived

from twistgate._twisted_compat import RequestNotSent
from twistgate.engine.errors import UpstreamClosedConnection, UpstreamConnectionError
from twistgate.errors import GatewayError, ServiceUnavailable, UpstreamTimeout, UpstreamUnavailable

#: Kinds of failure (the names `retry.on` uses).
CONNECT_FAILURE = "connect_failure"  # nothing was sent: refused, unreachable, DNS, connect timeout
RESET = "reset"  # the connection failed after (part of) the request may have gone out
TIMEOUT = "timeout"  # no response head within the read timeout


class NoHealthyUpstream(ServiceUnavailable):
    """Every target is unhealthy, ejected or gone: nothing to send the request to."""

    code = "no_healthy_upstream"
    default_message = "No healthy upstream target is available."


class CircuitOpen(ServiceUnavailable):
    """The breakers of every remaining target are open: answered without touching them."""

    code = "circuit_open"
    default_message = "The upstream service is failing; its circuit breaker is open."


def with_retry_after(error: GatewayError, seconds: Optional[float]) -> GatewayError:
    """Add ``Retry-After`` (whole seconds, at least 1) when the wait is known."""
    if seconds is not None:
        error.headers = error.headers + ((b"Retry-After", b"%d" % max(1, int(-(-seconds // 1)))),)
    return error


class ClientBodyFailed(GatewayError):
    """The client's request body broke off (too large, stalled, client gone): the upstream is not at fault."""

    status, code = 400, "request_body_incomplete"
    default_message = "The request body was not completed."


class UpstreamClosed(UpstreamUnavailable):
    """The upstream closed the connection before answering (and the request could not safely go again)."""

    code = "upstream_closed_connection"
    default_message = "The upstream service closed the connection before answering."


def kind_of(failure: Failure) -> str:
    """The kind of an attempt's failure (not a cancellation)."""
    if failure.check(ConnectError, DNSLookupError, RequestNotSent):
        return CONNECT_FAILURE
    if failure.check(UpstreamConnectionError) and not failure.value.sent:
        return CONNECT_FAILURE  # the connection was open, but nothing of the request went out
    return RESET


def is_cancellation(failure: Failure) -> bool:
    """A cancellation, directly or as ResponseNeverReceived([CancelledError]) (see PITFALLS)."""
    if failure.check(CancelledError, ConnectingCancelledError):
        return True
    reasons = getattr(failure.value, "reasons", ())
    return any(r.check(CancelledError) for r in reasons)


def client_error(kind: str, failure: Optional[Failure]) -> GatewayError:
    """The error the client sees when the last attempt failed this way."""
    if failure is not None and failure.check(GatewayError):
        return failure.value
    if kind == TIMEOUT:
        return UpstreamTimeout()
    if failure is not None and failure.check(ConnectTimeoutError):
        return UpstreamTimeout("Connecting to the upstream service timed out.")
    if failure is not None and (failure.check(UpstreamClosedConnection) or _closed_before_answering(failure)):
        return UpstreamClosed()
    if kind == CONNECT_FAILURE:
        return UpstreamUnavailable()
    return UpstreamUnavailable("The upstream service failed to answer.")


def _closed_before_answering(failure: Failure) -> bool:
    """twisted.web's client (``engine: twisted``): the connection ended before any response, and only that."""
    if not failure.check(ResponseNeverReceived):
        return False
    reasons = getattr(failure.value, "reasons", ())
    return bool(reasons) and all(r.check(ConnectionDone, ConnectionLost) for r in reasons)


def describe(failure: Failure) -> str:
    """A short text for logs and snapshots (never a traceback)."""
    value = failure.value
    reasons = getattr(value, "reasons", None)
    if reasons:
        return "; ".join(describe(r) for r in reasons)
    text = failure.getErrorMessage()
    return f"{type(value).__name__}: {text}" if text and type(value).__name__ not in text else (text or type(value).__name__)


def attempt_outcome(failure: Failure, timed_out: bool, stalled: bool) -> Tuple[str, GatewayError, str]:
    """
    A failed attempt's kind (for retries, breakers and ejection), the error
    the client gets, and the reason logged; ``timed_out``: no head within
    the read timeout (or, with ``stalled``, no body taken within the write
    timeout).
    """
    if timed_out:
        kind = CONNECT_FAILURE if failure.check(ConnectingCancelledError) else TIMEOUT
        error = client_error(TIMEOUT, None)
    else:
        kind = kind_of(failure)
        error = client_error(kind, failure)
    if stalled:
        reason = "the upstream took none of the request body within the write timeout"
    elif timed_out:
        reason = "no response head within the read timeout"
    else:
        reason = describe(failure)
    return kind, error, reason
