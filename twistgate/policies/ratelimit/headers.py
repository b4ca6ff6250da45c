"""
The rate-limit response headers.

* ``RateLimit-Policy`` and ``RateLimit`` as in draft-ietf-httpapi-ratelimit-headers
  (the structured-field form of draft 08 and later): a List with one Item per
  limit, the policy name as an sf-string, ``q`` (quota) and ``w`` (window,
  seconds) on the policy, ``r`` (remaining) and ``t`` (seconds until the quota
  is fully available again) on the current state.
* ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (seconds, not a date)
  for the limit closest to running out, as most gateways send them.
* ``Retry-After`` (seconds) on a 429: when every exhausted limit allows the
  request again.

Times are rounded up to whole seconds, so a client waiting that long is
never early.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from twistgate.policies.ratelimit.algorithms import MICROS, TOKEN_BUCKET, Decision, Limit, Outcome

HeaderPairs = List[Tuple[bytes, bytes]]


def seconds_up(micros: int) -> int:
    return -(-micros // MICROS) if micros > 0 else 0


def sf_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def policy_header(names: Sequence[str], limits: Sequence[Limit]) -> bytes:
    """The constant ``RateLimit-Policy`` value of a route (built once)."""
    items = []
    for name, limit in zip(names, limits):
        if limit.algorithm == TOKEN_BUCKET:
            # The bucket refills completely in burst/rate: q/w is the rate.
            window = seconds_up(-(-limit.burst * limit.period_us // limit.count))
        else:
            window = seconds_up(limit.period_us)
        items.append(f"{sf_string(name)};q={limit.burst};w={max(1, window)}")
    return ", ".join(items).encode("ascii")


def decision_headers(names: Sequence[bytes], limits: Sequence[Limit], policy: bytes, decision: Decision) -> HeaderPairs:
    """Every rate-limit header for one response (not Retry-After)."""
    parts = []
    tightest = 0
    tight_key = None
    for index, outcome in enumerate(decision.outcomes):
        reset = seconds_up(outcome.reset_us)
        parts.append(b"%s;r=%d;t=%d" % (names[index], outcome.remaining, reset))
        key = (outcome.remaining, -reset)
        if tight_key is None or key < tight_key:
            tightest, tight_key = index, key
    outcome = decision.outcomes[tightest]
    # Names in canonical form: they go straight into `Headers.raw`.
    return [
        (b"Ratelimit-Policy", policy),
        (b"Ratelimit", b", ".join(parts)),
        (b"X-Ratelimit-Limit", b"%d" % limits[tightest].burst),
        (b"X-Ratelimit-Remaining", b"%d" % outcome.remaining),
        (b"X-Ratelimit-Reset", b"%d" % seconds_up(outcome.reset_us)),
    ]


#: The fields `OneLimitHeaders` writes, as `Headers.raw` names them.
ONE_LIMIT_NAMES = (b"Ratelimit-Policy", b"Ratelimit", b"X-Ratelimit-Limit", b"X-Ratelimit-Remaining", b"X-Ratelimit-Reset")


class OneLimitHeaders:
    """
    `decision_headers` for a route with one limit, written straight into a
    response's header map, or formatted as ready header lines (`lines_format`,
    in the stage's ``on_response``): the constant
    parts are bytes made at load, so a response costs three numbers
    formatted (the same bytes, in the same order).
    """

    __slots__ = ("policy", "state_prefix", "limit", "lines_format")

    def __init__(self, name: bytes, limit: Limit, policy: bytes) -> None:
        self.policy = policy
        self.state_prefix = name + b";r="
        self.limit = b"%d" % limit.burst
        parts = (b"Ratelimit-Policy: " + policy, b"Ratelimit: " + self.state_prefix, b"X-Ratelimit-Limit: " + self.limit)
        policy_line, state_line, limit_line = (part.replace(b"%", b"%%") for part in parts)  # (a name may hold a %)
        self.lines_format = (
            policy_line + b"\r\n" + state_line + b"%d;t=%d\r\n" + limit_line + b"\r\n"
            b"X-Ratelimit-Remaining: %d\r\nX-Ratelimit-Reset: %d\r\n"
        )

    def lines(self, outcome: Outcome) -> bytes:
        """The same fields as `write`, as ready header lines (`twistgate.messages.ProxyResponse.prepared_fields`)."""
        remaining = outcome.remaining
        reset_us = outcome.reset_us
        reset = -(-reset_us // MICROS) if reset_us > 0 else 0  # seconds_up, a call fewer
        return self.lines_format % (remaining, reset, remaining, reset)

    def write(self, raw: Dict[bytes, List[bytes]], decision: Decision) -> None:
        outcome = decision.outcomes[0]
        remaining = b"%d" % outcome.remaining
        reset_us = outcome.reset_us
        reset = b"%d" % (-(-reset_us // MICROS) if reset_us > 0 else 0)  # seconds_up, a call fewer
        raw[b"Ratelimit-Policy"] = [self.policy]
        raw[b"Ratelimit"] = [self.state_prefix + remaining + b";t=" + reset]
        raw[b"X-Ratelimit-Limit"] = [self.limit]
        raw[b"X-Ratelimit-Remaining"] = [remaining]
        raw[b"X-Ratelimit-Reset"] = [reset]


def retry_after(decision: Decision) -> bytes:
    wait = max(o.retry_us for o in decision.outcomes if not o.allowed)
    return b"%d" % max(1, seconds_up(wait))
