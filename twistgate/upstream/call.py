"""
One request's way to an upstream: choose a target (at once, or when an
extension balancer's Deferred fires), send, wait for the head
under the read timeout, and on failure maybe retry on another target after
a backoff, all under the total timeout.  `Upstream.forward` starts one
`Forwarding` per request; cancelling its Deferred cancels whatever is under
way (an attempt or a backoff).

`Attempt` does the bookkeeping of one try on one target: in-flight count,
latency, and the outcome fed to the breaker and the outlier detector exactly
once (at the head for a failing status, otherwise when the body is over).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.errors import GatewayError, ServiceUnavailable, UpstreamTimeout
from twistgate.upstream.body import WatchedBody

#: Request-body bytes kept for sending again without a retry policy (the pool's stale-connection retry).
DEFAULT_REPLAY_BUFFER = 64 * 1024
from twistgate.upstream.failures import CONNECT_FAILURE, TIMEOUT, ClientBodyFailed, client_error, describe, kind_of
from twistgate.upstream.retry import CallPolicy, backoff, retries_on, safe_to_repeat
from twistgate.upstream.watch import WatchedResponse

if TYPE_CHECKING:
    from twistgate.upstream.group import Upstream, UpstreamCall
    from twistgate.upstream.target import Target

_log = Logger()


class Attempt:
    """One try on one target, from send to the end of the body."""

    __slots__ = ("upstream", "target", "ticket", "started", "breaker_due", "outlier_due", "closed")

    def __init__(self, upstream: "Upstream", target: "Target", ticket: Optional[int]) -> None:
        self.upstream = upstream
        self.target = target
        self.ticket = ticket
        self.started = upstream.clock.seconds()
        self.breaker_due = target.breaker is not None and ticket is not None
        self.outlier_due = upstream.outlier is not None
        self.closed = False
        target.in_flight += 1

    def failed(self, error: str) -> None:
        """The attempt failed before a response head (connect failure, reset, timeout)."""
        self.target.last_error = error
        self._settle(False)
        self._close()

    def head(self, status: int) -> None:
        """A response head arrived: latency, and failing statuses count at once."""
        upstream, target = self.upstream, self.target
        now = upstream.clock.seconds()
        target.latency.add(now - self.started, now)
        failing = False
        if self.breaker_due and status in target.breaker.config.statuses:  # type: ignore[union-attr]
            self.breaker_due = False
            target.breaker.record(self.ticket, False)  # type: ignore[union-attr,arg-type]
            failing = True
        outlier = upstream.outlier
        if self.outlier_due and status in outlier.config.statuses:  # type: ignore[union-attr]
            self.outlier_due = False
            outlier.record(target, False, upstream.targets)  # type: ignore[union-attr]
            failing = True
        if failing:
            target.last_error = f"answered {status}"

    def body_over(self, ok: bool, error: Optional[str]) -> None:
        """The response body ended (`ok`: complete, or stopped by the gateway)."""
        if not ok:
            self.target.last_error = error
        self._settle(ok)
        self._close()

    def abandon(self) -> None:
        """Cancelled by the client or a timeout of the whole call: no outcome to record."""
        if self.breaker_due:
            self.breaker_due = False
            self.target.breaker.release(self.ticket)  # type: ignore[union-attr,arg-type]
        self.outlier_due = False
        self._close()

    def _settle(self, ok: bool) -> None:
        if self.breaker_due:
            self.breaker_due = False
            self.target.breaker.record(self.ticket, ok)  # type: ignore[union-attr,arg-type]
        if self.outlier_due:
            self.outlier_due = False
            self.upstream.outlier.record(self.target, ok, self.upstream.targets)  # type: ignore[union-attr]

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.target.in_flight -= 1


class Forwarding:
    """The attempts of one request (see the module docstring)."""

    def __init__(
        self,
        upstream: "Upstream",
        policy: CallPolicy,
        request: Any,
        body: Any,
        call: "UpstreamCall",
        preserve_host: bool,
        prefer: Any = None,
    ) -> None:
        self.upstream = upstream
        self.prefer = prefer
        self.policy = policy
        self.request = request
        self.body = body
        self.call = call
        self.preserve_host = preserve_host
        self.result: Deferred[Any] = Deferred(self._cancel)
        self.tried: List[Any] = []
        self.current: Optional[Deferred[Any]] = None  # an attempt or a backoff wait
        self.read_timer: Any = None
        self._watch: Optional[WatchedBody] = None  # the current attempt's body, while it is sent
        self.total_timer: Any = None
        self.last_error: Optional[GatewayError] = None
        self.done = False

    def start(self) -> "Deferred[Any]":
        policy = self.policy
        if policy.total is not None:
            self.total_timer = self.upstream.timers.call_later(policy.total, self._total_expired)
        if policy.retry is not None:
            self.upstream.budget.deposit()
        # Kept (by reference) so a retry, or the pool's one retry on a fresh
        # connection after the upstream closed a pooled one, can send it again.
        keep = getattr(self.body, "keep_for_replay", None)
        if keep is not None:
            keep(policy.retry.replay_buffer if policy.retry is not None else DEFAULT_REPLAY_BUFFER)
        self._attempt()
        return self.result

    # -- one attempt ---------------------------------------------------------

    def _attempt(self, _: Any = None) -> None:
        self.current = None
        try:
            admitted = self.upstream.admit(self.request, self.tried, self.prefer)
        except GatewayError as error:
            self._fail(self.last_error or error)
            return
        if isinstance(admitted, Deferred):  # an extension balancer is choosing
            self.current = admitted
            admitted.addCallbacks(self._send_to, self._not_admitted).addErrback(self._not_admitted)
            return
        self._send_to(admitted)

    def _not_admitted(self, failure: Failure) -> None:
        self.current = None
        if self.done:
            return  # cancelled while the balancer was choosing
        if not failure.check(GatewayError):
            _log.failure("choosing a target of {upstream} failed", failure, upstream=self.upstream.name)
            failure = Failure(ServiceUnavailable())
        self._fail(self.last_error or failure.value)

    def _send_to(self, admitted: Any) -> None:
        self.current = None
        if self.done:
            target, ticket = admitted
            if ticket is not None:
                target.breaker.release(ticket)
            return
        upstream = self.upstream
        target, ticket = admitted
        self.tried.append(target)
        attempt = Attempt(upstream, target, ticket)
        call = self.call
        call.target = target
        call.attempts += 1
        request = self.request
        if not self.preserve_host:
            request.headers.raw[b"Host"] = [target.host_header]
        body = self.body
        if body is not None and self.policy.retry is not None and hasattr(body, "attempt"):
            body = body.attempt()
        watch = self._watch = None
        if body is not None:
            # While the body goes up, the write timeout watches the upstream
            # taking it; the read timeout starts once it is all sent.
            write = self.policy.write if self.policy.write is not None else self.policy.read
            watch = self._watch = body = WatchedBody(
                body, upstream.clock, write, lambda: self._stalled(watch), lambda: self._sent(watch)
            )
        try:
            sent_to = upstream.with_connect_timeout(target, self.policy.connect)
            d = upstream.send(sent_to, request.method, request.target, request.headers, body, call.interim)
        except Exception:
            d = Deferred()
            d.errback()
        self.current = d
        if watch is None or watch.sent:
            self.read_timer = upstream.timers.call_later(self.policy.read, d.cancel)
        d.addBoth(self._settled, attempt, watch).addErrback(self._crashed)

    def _sent(self, watch: Optional[WatchedBody]) -> None:
        """The request body is all written: the wait for the head starts now."""
        d = self.current
        if watch is self._watch and self.read_timer is None and d is not None:
            self.read_timer = self.upstream.timers.call_later(self.policy.read, d.cancel)

    def _stalled(self, watch: Optional[WatchedBody]) -> None:
        """The upstream took none of the body for the write timeout: this attempt fails (504)."""
        d = self.current
        if watch is self._watch and d is not None:
            d.cancel()

    def _settled(self, result: Any, attempt: Attempt, watch: Optional[WatchedBody] = None) -> None:
        self.current = None
        self._watch = None
        timer, self.read_timer = self.read_timer, None
        timed_out = timer is not None and not timer.active()
        if timer is not None and not timed_out:
            timer.cancel()
        stalled = watch is not None and watch.stalled_out
        if watch is not None:
            timed_out = timed_out or stalled
            watch.stop()
        if self.done:
            # Cancelled by the client, or the total timeout answered already.
            if not isinstance(result, Failure):
                _discard(result)
            attempt.abandon()
            return
        if isinstance(result, Failure):
            self._attempt_failed(result, attempt, timed_out, stalled)
        else:
            self._got_head(result, attempt)

    def _attempt_failed(self, failure: Failure, attempt: Attempt, timed_out: bool, stalled: bool = False) -> None:
        if getattr(self.body, "aborted_by_client", False):
            # The client broke its own upload (too large, stalled, gone): not
            # the upstream's failure.  No breaker, ejection or retry budget is
            # charged, and nothing is retried; the engine has answered (413,
            # 408) or the client is gone.
            attempt.abandon()
            self._fail(ClientBodyFailed())
            return
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
        attempt.failed(reason)
        _log.info(
            "upstream {upstream}: {target} failed for {request_id}: {reason}",
            upstream=self.upstream.name,
            target=attempt.target.label,
            request_id=self.request.request_id,
            reason=reason,
        )
        self.last_error = error
        if self._may_retry(kind, None, sent=kind != CONNECT_FAILURE):
            return
        self._fail(error)

    def _got_head(self, response: Any, attempt: Attempt) -> None:
        status = response.code
        attempt.head(status)
        watched = WatchedResponse(response, attempt.body_over, self.policy.read, self.upstream.timers)
        retry = self.policy.retry
        if retry is not None and status in retry.statuses:
            if self._may_retry(None, status, sent=True):
                _discard(watched)
                return
        self._succeed(watched)

    # -- retries -------------------------------------------------------------

    def _may_retry(self, kind: Optional[str], status: Optional[int], *, sent: bool) -> bool:
        """Start the backoff before another attempt, if every rule allows one (see retry.py)."""
        policy = self.policy
        retry = policy.retry
        if retry is None or self.call.attempts >= retry.attempts:
            return False
        if not retries_on(retry, kind, status):
            return False
        request = self.request
        if sent and not safe_to_repeat(policy, request.method, request.headers):
            return False
        if self.body is not None and not getattr(self.body, "replayable", False):
            return False  # sent, and not kept whole: it cannot be sent again
        upstream = self.upstream
        delay = backoff(retry, self.call.attempts, upstream.rng)
        total = self.total_timer
        if total is not None and total.getTime() <= upstream.clock.seconds() + delay:
            return False  # the retry could not finish in time anyway
        if not upstream.budget.withdraw():
            _log.info("upstream {upstream}: retry budget exhausted; not retrying", upstream=upstream.name)
            return False
        wait = deferLater(upstream.clock, delay, lambda: None)
        self.current = wait
        wait.addCallbacks(self._attempt, _ignore_cancel).addErrback(self._crashed)
        return True

    def _crashed(self, failure: Failure) -> None:
        """A bug in an attempt's bookkeeping: logged with the request id, and the call fails (502)."""
        _log.failure("internal error forwarding {request_id}", failure, request_id=self.request.request_id)
        if not self.done:
            self._fail(GatewayError())

    # -- the end ---------------------------------------------------------------

    def _succeed(self, response: Any) -> None:
        self.done = True
        self._stop_total()
        self.call.head_at = self.upstream.clock.seconds()
        self.result.callback(response)

    def _fail(self, error: GatewayError) -> None:
        self.done = True
        self._stop_total()
        self.result.errback(Failure(error))

    def _stop_total(self) -> None:
        if self.total_timer is not None:
            if self.total_timer.active():
                self.total_timer.cancel()
            self.total_timer = None

    def _total_expired(self) -> None:
        self.total_timer = None
        if self.done:
            return
        self._fail(UpstreamTimeout())
        self._halt()

    def _cancel(self, _: Any) -> None:
        # The exchange cancelled us (client gone, route timeout); Deferred
        # errbacks `result` with CancelledError after this.
        self.done = True
        self._stop_total()
        self._halt()

    def _halt(self) -> None:
        current, self.current = self.current, None
        if current is not None:
            current.cancel()


def _ignore_cancel(failure: Failure) -> None:
    failure.trap(CancelledError)


def _discard(response: Any) -> None:
    """Drop a response nobody will read (its connection is closed)."""
    try:
        response.deliverBody(_Discard())
    except Exception:  # pragma: no cover - already delivered
        pass


class _Discard:
    def makeConnection(self, transport: Any) -> None:
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        pass
