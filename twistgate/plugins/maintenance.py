"""
``maintenance``: answer 503 while the service is down for maintenance.

Options:

``message``
    The error message (default ``"The service is down for maintenance."``).
``allow_paths``
    Paths still served: exact (``/health``) or a prefix (``/status/*``, which
    matches ``/status`` and everything under ``/status/``).  Compared with
    ``request.path`` as the plugin sees it.
``retry_after``
    A duration (``120s``, ``5m``); when given, the 503 carries
    ``Retry-After`` in whole seconds.

Turn it on and off with the section's ``enabled`` (globally, or per route).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence, Tuple

from twistgate.config import parse_duration
from twistgate.errors import ServiceUnavailable
from twistgate.messages import ProxyRequest
from twistgate.plugins._options import check_keys, string_list
from twistgate.plugins.hookspecs import hookimpl
from twistgate.plugins.registry import PluginContext

DEFAULT_MESSAGE = "The service is down for maintenance."


class Maintenance:
    """Refuses every request but the allowed paths with a 503."""

    def __init__(
        self,
        message: str = DEFAULT_MESSAGE,
        allow_paths: Sequence[str] = (),
        retry_after: Optional[float] = None,
    ) -> None:
        self.message = message
        self.exact = frozenset(p for p in allow_paths if not p.endswith("/*"))
        self.prefixes: Tuple[str, ...] = tuple(p[:-2] for p in allow_paths if p.endswith("/*"))
        self.headers: Tuple[Tuple[str, str], ...] = (
            (("Retry-After", str(math.ceil(retry_after))),) if retry_after is not None else ()
        )

    def allows(self, path: str) -> bool:
        if path in self.exact:
            return True
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.prefixes)

    @hookimpl
    def on_request(self, request: ProxyRequest) -> None:
        if not self.allows(request.path):
            raise ServiceUnavailable(self.message, code="maintenance", headers=self.headers)


def make_plugin(options: Mapping[str, Any], context: PluginContext) -> Maintenance:
    """Validate ``options`` and build the plugin."""
    check_keys(options, ("message", "allow_paths", "retry_after"))
    message = options.get("message", DEFAULT_MESSAGE)
    if not isinstance(message, str) or not message.strip():
        raise TypeError("message must be a non-empty string")
    allow_paths = string_list(options, "allow_paths")
    for path in allow_paths:
        if not path.startswith("/") or "*" in path[:-1] or (path.endswith("*") and not path.endswith("/*")):
            raise ValueError(
                f"allow_paths: {path!r} must be an exact path (/health) or a prefix ending in /* (/status/*)"
            )
    retry_after = options.get("retry_after")
    seconds = None
    if retry_after is not None:
        try:
            seconds = parse_duration(retry_after)
        except ValueError as error:
            raise ValueError(f"retry_after: {error}") from None
        if seconds <= 0:
            raise ValueError("retry_after must be more than 0s")
    return Maintenance(message, allow_paths, seconds)
