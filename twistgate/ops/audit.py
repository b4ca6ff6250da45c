"""
The audit trail: who did what to the gateway through its admin listener
(reloads, API keys created and revoked, targets drained and undrained), and
the reloads SIGHUP and the file watch started.

Kept in memory, bounded (the newest `CAPACITY` entries), answered by
``GET /admin/audit``, and written to the log as one JSON object per action
(``admin audit: {...}``), so a log shipper keeps the full history.

An entry never holds a secret: it is built from an explicit list of facts
(the action, its outcome and status, the client's address, the request id,
and per action a few names: upstream and target, key id and consumer,
generation and what changed), never from headers, bodies or messages, which
may quote a token, an API key or a configuration value.
"""

from __future__ import annotations

import json
from collections import deque
from datetime import datetime, timezone
from typing import Any, Deque, Dict, List, Optional

from twisted.logger import Logger

__all__ = ["ACTIONS", "AuditTrail", "audited_reload", "outcome_of"]

_log = Logger()

#: The newest entries kept in memory.
CAPACITY = 500
ACTIONS = ("reload", "key_create", "key_revoke", "drain", "undrain")


def outcome_of(status: Optional[int]) -> str:
    """``ok`` (2xx), ``refused`` (4xx: bad request, unknown name, no token), ``failed`` (anything else)."""
    if status is None:
        return "failed"
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500:
        return "refused"
    return "failed"


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class AuditTrail:
    """The newest admin actions, oldest dropped first."""

    def __init__(self, clock: Any, capacity: int = CAPACITY) -> None:
        self.clock = clock
        self.entries: Deque[Dict[str, Any]] = deque(maxlen=capacity)
        self.recorded = 0

    def record(
        self, action: str, outcome: str, *, status: Optional[int] = None, client: Optional[str] = None,
        via: str = "api", request_id: Optional[str] = None, details: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """
        Keep and log one action.

        :param via: ``api`` (the admin listener), ``SIGHUP`` or ``file watch``.
        :param details: plain names and numbers only (callers pick them; see the module docstring).
        """
        now = self.clock.seconds()
        entry: Dict[str, Any] = {
            "at": now, "time": _time(now), "action": action, "outcome": outcome, "status": status,
            "via": via, "client": client, "request_id": request_id, "details": dict(details or {}),
        }
        self.entries.append(entry)
        self.recorded += 1
        _log.info("admin audit: {audit_json}", audit_json=json.dumps(entry, sort_keys=True, default=str), audit=entry)
        return entry

    def answer(self, limit: Optional[int] = None) -> Dict[str, Any]:
        """``GET /admin/audit``: newest first."""
        newest: List[Dict[str, Any]] = list(reversed(self.entries))
        if limit is not None:
            newest = newest[: max(0, limit)]
        return {"capacity": self.entries.maxlen, "recorded": self.recorded, "entries": newest}


def reload_details(outcome: Dict[str, Any]) -> Dict[str, Any]:
    """What a reload's audit entry says: the generation, and the names of what changed (never a message)."""
    details: Dict[str, Any] = {"generation": outcome.get("generation")}
    changes = outcome.get("changes")
    if outcome.get("ok") and isinstance(changes, dict):
        details["changes"] = {k: list(v) for k, v in changes.items() if v}
    if outcome.get("issues"):
        details["issues"] = len(outcome["issues"])
    return details


def audited_reload(audit: Optional[AuditTrail], reload: Any, reason: str) -> Any:
    """A reload started by a signal or the file watch (``reload(reason=...)``), recorded when it is done."""
    d = reload(reason=reason)
    if audit is None:
        return d

    def done(outcome: Dict[str, Any]) -> Dict[str, Any]:
        audit.record(
            "reload", "ok" if outcome.get("ok") else "refused",
            via="file watch" if reason == "file changed" else reason, details=reload_details(outcome),
        )
        return outcome

    return d.addCallback(done)
