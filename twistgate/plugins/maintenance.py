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

import dataclasses
import math
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from twistgate.errors import ServiceUnavailable
from twistgate.messages import ProxyRequest
from twistgate.plugins.options import Duration
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


def _check_path(path: str) -> None:
    if not path.startswith("/") or "*" in path[:-1] or (path.endswith("*") and not path.endswith("/*")):
        raise ValueError(
            f"allow_paths: {path!r} must be an exact path (/health) or a prefix ending in /* (/status/*)"
        )


@dataclasses.dataclass(frozen=True)
class Options:
    """The options of ``maintenance`` (read and checked by the configuration loader)."""

    message: str = dataclasses.field(default=DEFAULT_MESSAGE, metadata={"doc": "the error message"})
    allow_paths: List[str] = dataclasses.field(
        default_factory=list,
        metadata={"doc": "paths still served: exact (/health) or a prefix (/status/*)"},
    )
    retry_after: Optional[Duration] = dataclasses.field(
        default=None, metadata={"doc": "sent as Retry-After, in whole seconds"}
    )

    def __post_init__(self) -> None:
        if not self.message.strip():
            raise ValueError("message must not be empty")
        for path in self.allow_paths:
            _check_path(path)
        if self.retry_after is not None and self.retry_after <= 0:
            raise ValueError("retry_after must be more than 0s")


def make_plugin(options: Mapping[str, Any], context: PluginContext) -> Maintenance:
    """Answer 503 to every request but the allowed paths while the service is down (options: `Options`)."""
    return Maintenance(options["message"], options["allow_paths"], options["retry_after"])


make_plugin.Options = Options  # type: ignore[attr-defined]
