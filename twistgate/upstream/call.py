"""
One request's way to an upstream: choose a target (at once, or when an
extension balancer's Deferred fires), send, wait for the head
under the read timeout, and on failure maybe retry on another target after
a backoff, all under the total timeout.  `Upstream.forward` starts one
`Forwarding` per request; cancelling it cancels whatever is under way (an
attempt or a backoff).

A `Forwarding` reports with plain callbacks, exactly once: ``on_head(response)``
or ``on_failed(failure)`` (`CancelledError` when cancelled).  On the hot
path nothing here makes a Deferred: a `Forwarding` *is* the HTTP/1.1
engine's pooled request (`twistgate.engine.pool.PooledRequest`), so an
attempt goes to the pool with no object or callback of its own; a traced
attempt, another client or an extension balancer still go through Deferreds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.engine.pool import PooledRequest
from twistgate.errors import GatewayError, ServiceUnavailable, UpstreamTimeout
from twistgate.relay import discard
from twistgate.upstream.attempt import Attempt
from twistgate.upstream.body import WatchedBody
from twistgate.upstream.failures import CONNECT_FAILURE, ClientBodyFailed, attempt_outcome
from twistgate.upstream.retry import CallPolicy, backoff, retries_on, safe_to_repeat

if TYPE_CHECKING:
    from twistgate.upstream.group import Upstream, UpstreamCall

__all__ = ["Attempt", "DEFAULT_REPLAY_BUFFER", "Forwarding"]

#: Request-body bytes kept for sending again without a retry policy (the pool's stale-connection retry).
DEFAULT_REPLAY_BUFFER = 64 * 1024

_log = Logger()
_SENDING = object()  # `Forwarding.current` while an attempt is this object's own pooled request


class Forwarding(PooledRequest):
    """The attempts of one request (see the module docstring)."""

    __slots__ = (
        "upstream", "on_head", "on_failed", "prefer", "policy", "request", "body", "call", "preserve_host", "tried",
        "current", "_watch", "total_timer", "last_error", "done", "attempt",
    )  # fmt: skip

    def __init__(
        self,
        upstream: "Upstream",
        policy: CallPolicy,
        request: Any,
        body: Any,
        call: "UpstreamCall",
        preserve_host: bool,
        prefer: Any,
        on_head: Callable[[Any], None],
        on_failed: Callable[[Failure], None],
    ) -> None:
        """Made and started at once (`Upstream.start_forward`): the first attempt is under way when it returns."""
        self.upstream = upstream
        self.on_head = on_head
        self.on_failed = on_failed
        self.prefer = prefer
        self.policy = policy
        self.request = request
        self.body = body
        self.call = call
        self.preserve_host = preserve_host
        self.tried: Sequence[Any] = ()  # the targets tried before a retry (noted as it starts)
        self.current: Any = None  # an attempt (a Deferred, or _SENDING) or a backoff wait, to cancel
        self.attempt: Optional[Attempt] = None  # the attempt under way, until its head or failure
        self._watch: Optional[WatchedBody] = None  # the current attempt's body, while it is sent
        self.total_timer: Any = None
        self.last_error: Optional[GatewayError] = None
        self.done = False
        if policy.total is not None:
            self.total_timer = upstream.timers.call_later(policy.total, self._total_expired)
        retry = policy.retry
        if retry is not None:
            upstream.budget.deposit()
        if body is not None:
            # Kept (by reference) so a retry, or the pool's one retry on a fresh
            # connection after the upstream closed a pooled one, can send it again.
            keep = getattr(body, "keep_for_replay", None)
            if keep is not None:
                keep(retry.replay_buffer if retry is not None else DEFAULT_REPLAY_BUFFER)
        lone = upstream._lone  # `Upstream.admit`'s answer for a lone target, without the asking
        if lone is not None and prefer is None:
            self._send_to(lone)
        else:
            self._attempt()

    # -- one attempt ---------------------------------------------------------

    def _attempt(self, _: Any = None) -> None:
        self.current = None
        try:
            admitted = self.upstream.admit(self.request, self.tried, self.prefer)
        except GatewayError as error:
            self._fail(self.last_error or error)
            return
        # (Deferred's metaclass is ABCMeta: rule out the usual tuple first.)
        if admitted.__class__ is not tuple and isinstance(admitted, Deferred):  # an extension balancer is choosing
            self._arm_route()
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
        attempt = Attempt(upstream, target, ticket, self.policy.read)
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
        policy = self.policy
        pool = upstream.pool
        tracer = upstream.events.tracer
        if pool is not None and (tracer is None or tracer.exporter is None):  # no span of its own to make
            # The hot path: this object is the pool's request, no Deferred anywhere.
            endpoint = target.endpoint
            if endpoint is None or policy.connect != upstream.connect:
                endpoint = upstream.endpoint_of(target, policy.connect)
            self.prepare(
                pool, target.key, endpoint, request.method, request.target, request.headers, body, call.interim,
                request.prepared_fields,
            )
            self.attempt = attempt
            self.current = _SENDING
            if watch is None and call.deadline is not None and call.deadline.timer is None:
                # One timer for the read and route timeouts, from the attempt's start.
                attempt.wait_head_within(self._stop_sending, call.deadline, attempt.started)
            else:
                self._arm_route()
                if watch is None or watch.sent:
                    attempt.wait_head(self._stop_sending)
            try:
                pool.dispatch(self)
            except Exception:
                if not self.silenced:
                    self.silenced = True
                    self.refused(Failure())
            return
        request.spell_out_fields()  # this client writes the head from the fields
        self._arm_route()
        try:
            sent_to = upstream.with_connect_timeout(target, policy.connect)
            d = upstream.send(sent_to, request.method, request.target, request.headers, body, call.interim)
        except Exception:
            d = Deferred()
            d.errback()
        self.current = d
        self.attempt = attempt
        if watch is None or watch.sent:
            attempt.wait_head(d.cancel)
        d.addBoth(self._settled, attempt, watch).addErrback(self._crashed)

    # -- the pool's request (`PooledRequest`) ----------------------------------------

    def _stop_sending(self) -> None:
        """Cancel the attempt under way in the pool: it settles with `CancelledError`, as a cancelled Deferred would."""
        if self.silenced or self.current is not _SENDING:
            return
        self.stop()
        self._settled_safely(Failure(CancelledError()))

    def _settled_safely(self, result: Any) -> None:
        """`_settled` for the pool's attempt: a bug in it is logged as `_crashed` would log it."""
        attempt, self.attempt = self.attempt, None
        try:
            self._settled(result, attempt, self._watch)  # type: ignore[arg-type]
        except Exception:
            self._crashed(Failure())

    #: The pool's failure (`PooledRequest`).
    refused = _settled_safely

    def answered(self, response: Any) -> None:
        """
        The pool's head (`PooledRequest`).  The usual case (no body was
        sent, no retry policy, still wanted) goes straight to `_succeed`:
        what `_settled` and `_got_head` would do for it, without them.
        """
        if self._watch is not None or self.done or self.policy.retry is not None:
            self._settled_safely(response)
            return
        attempt, self.attempt = self.attempt, None
        self.current = None
        try:
            self._succeed(attempt.answered(response))  # type: ignore[union-attr]
        except Exception:
            self._crashed(Failure())

    def _cancel_current(self) -> None:
        current = self.current
        if current is _SENDING:
            self._stop_sending()
        elif current is not None:
            current.cancel()

    def _sent(self, watch: Optional[WatchedBody]) -> None:
        """The request body is all written: the wait for the head starts now."""
        attempt = self.attempt
        if watch is self._watch and attempt is not None and attempt.timer is None and self.current is not None:
            attempt.wait_head(self._cancel_current)

    def _stalled(self, watch: Optional[WatchedBody]) -> None:
        """The upstream took none of the body for the write timeout: this attempt fails (504)."""
        if watch is self._watch:
            self._cancel_current()

    def _settled(self, result: Any, attempt: Attempt, watch: Optional[WatchedBody] = None) -> None:
        self.current = None
        self._watch = None
        self.attempt = None
        timed_out = attempt.timed_out  # no head within the read timeout
        if isinstance(result, Failure):
            attempt.stop_timer()  # a head keeps it: it times the body's gaps next
        stalled = watch is not None and watch.stalled_out
        if watch is not None:
            timed_out = timed_out or stalled
            watch.stop()
        if self.done:
            # Cancelled by the client, or the total timeout answered already.
            if not isinstance(result, Failure):
                discard(result)
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
        kind, error, reason = attempt_outcome(failure, timed_out, stalled)
        attempt.failed(reason)
        _log.info(
            "upstream {upstream}: {target} failed for {request_id}: {reason}",
            upstream=self.upstream.name,
            target=attempt.target.label,
            request_id=self.request.request_id,
            reason=reason,
        )
        self.last_error = error
        if self._may_retry(kind, None, attempt, sent=kind != CONNECT_FAILURE):
            return
        self._fail(error)

    def _got_head(self, response: Any, attempt: Attempt) -> None:
        status = response.code
        watched = attempt.answered(response)
        retry = self.policy.retry
        if retry is not None and status in retry.statuses:
            if self._may_retry(None, status, attempt, sent=True):
                discard(watched)
                return
        self._succeed(watched)

    # -- retries -------------------------------------------------------------

    def _may_retry(self, kind: Optional[str], status: Optional[int], attempt: Attempt, *, sent: bool) -> bool:
        """Start the backoff before another attempt (`attempt`'s target noted as tried), if every rule allows one (see retry.py)."""
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
        self.tried = [*self.tried, attempt.target]
        self._arm_route()  # no attempt's timer stands for it during the backoff
        wait = deferLater(upstream.clock, delay, lambda: None)
        self.current = wait
        wait.addCallbacks(self._attempt, _ignore_cancel).addErrback(self._crashed)
        return True

    def _arm_route(self) -> None:
        """The exchange's route timeout gets its own timer: no attempt's read timer stands for it now."""
        deadline = self.call.deadline
        if deadline is not None:
            deadline.arm_route(self.upstream.timers)

    def _crashed(self, failure: Failure) -> None:
        """A bug in an attempt's bookkeeping: logged with the request id, and the call fails (502)."""
        _log.failure("internal error forwarding {request_id}", failure, request_id=self.request.request_id)
        if not self.done:
            self._fail(GatewayError())

    # -- the end ---------------------------------------------------------------

    def _succeed(self, response: Attempt) -> None:
        self.done = True
        if self.total_timer is not None:
            self._stop_total()
        self.call.head_at = response.head_at
        self.on_head(response)
        if response.timer is not None:  # (else nothing to hand over: `handed_over`)
            response.handed_over()

    def _fail(self, error: GatewayError) -> None:
        self.done = True
        self._stop_total()
        self.on_failed(Failure(error))

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

    def cancel(self) -> None:
        """
        Stop (client gone, route timeout): whatever is under way is cancelled,
        and ``on_failed`` hears `CancelledError`, unless the call was over already.
        """
        if self.done:
            return
        self.done = True
        self._stop_total()
        self._halt()
        self.on_failed(Failure(CancelledError()))

    def _halt(self) -> None:
        if self.current is _SENDING:
            self._stop_sending()
            return
        current, self.current = self.current, None
        if current is not None:
            current.cancel()


def _ignore_cancel(failure: Failure) -> None:
    failure.trap(CancelledError)

