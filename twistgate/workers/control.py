"""
The control channel between the supervisor and each worker: Twisted AMP
over a UNIX socketpair the supervisor makes for each worker (the worker
sees its end as descriptor 3).

Nothing here is on a request's path except `Decide` (a host-wide rate-limit
decision, only for routes with a ``rate_limit`` on the memory backend).
Admin data (metrics, stats, upstreams) does not travel here: AMP values
are limited to 64 KiB, so the supervisor reads it over each worker's
private admin socket (`twistgate.workers.hostadmin`).

Supervisor -> worker: `Prepare`, `Commit`, `Abort` (a two-phase reload),
`ForgetKey` (a revoked API key).  Worker -> supervisor: `Ready`, `Decide`.
Stopping is a signal (SIGTERM), which works even when a worker's reactor
is too busy to read this channel.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.protocols import amp

#: Descriptor of the control socket in a worker.
CONTROL_FD = 3
#: The first listening socket's descriptor in a worker; the others follow.
FIRST_LISTENER_FD = 4


class JSON(amp.Argument):
    """A JSON value (kept well under AMP's 64 KiB per value by its users)."""

    def toString(self, inObject: Any) -> bytes:
        return json.dumps(inObject, default=str, separators=(",", ":")).encode("utf-8")

    def fromString(self, inString: bytes) -> Any:
        return json.loads(inString.decode("utf-8"))


class Ready(amp.Command):
    """Worker: my listeners accept and my generation serves ``version``."""

    arguments = [(b"index", amp.Integer()), (b"pid", amp.Integer()), (b"version", amp.Integer())]
    response: list = []


class Prepare(amp.Command):
    """
    Supervisor: load the configuration snapshot at ``path``, build and start
    its generation, but keep serving the current one.  ``ok`` false means
    refused (``outcome`` says why); the built generation is then discarded.
    """

    arguments = [(b"version", amp.Integer()), (b"path", amp.Unicode()), (b"reason", amp.Unicode())]
    response = [(b"ok", amp.Boolean()), (b"outcome", JSON())]


class Commit(amp.Command):
    """Supervisor: every worker prepared ``version``; swap it in now."""

    arguments = [(b"version", amp.Integer())]
    response = [(b"outcome", JSON())]


class Abort(amp.Command):
    """Supervisor: some worker refused ``version``; discard the prepared generation."""

    arguments = [(b"version", amp.Integer())]
    response: list = []


class Decide(amp.Command):
    """
    Worker: rate-limit decisions on the host's memory backend, for every
    request that asked during one turn of the worker's reactor (a batch: the
    per-message cost of AMP is paid once for all of them).  ``sizes`` is the
    number of limits of each request; ``keys`` one key per limit and
    ``limits`` four integers per limit (algorithm, count, period in µs,
    burst), all requests concatenated; ``values`` is, per request,
    ``allowed`` then four integers per limit (allowed, remaining, reset µs,
    retry µs).
    """

    arguments = [
        (b"sizes", amp.ListOf(amp.Integer())),
        (b"keys", amp.ListOf(amp.Unicode())),
        (b"limits", amp.ListOf(amp.Integer())),
    ]
    response = [(b"values", amp.ListOf(amp.Integer()))]
    requiresAnswer = True


class ForgetKey(amp.Command):
    """Supervisor: an API key was revoked; drop any cached answer for it now."""

    arguments = [(b"key_id", amp.Unicode())]
    response: list = []
