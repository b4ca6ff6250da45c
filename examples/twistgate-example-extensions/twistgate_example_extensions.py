"""
Example twistgate extensions, one per extension point (see
docs/extensions.md in twistgate):

``example_pinned`` (``twistgate.balancers``)
    Sends a request to the target whose URL contains the value of a header
    (``X-Pin`` by default); requests without it rotate over the targets.
``example_drain_file`` (``twistgate.health_checks``)
    A target is unhealthy while its URL is a line of a file: operators
    drain a target by adding it there.
``example_tokens`` (``twistgate.authenticators``)
    Static bearer tokens, each naming a consumer and its scopes.
``example_file`` (``twistgate.discovery``)
    Targets listed in a text file, one URL a line (``#`` comments), as a
    deploy script or a cron job would write them.

Each class is its own factory: ``Class(options)`` (``options`` a plain
dict, validated and converted by twistgate from the ``Options`` dataclass
the class declares), and has the one method of its extension point.  The
files are small and local, so reading them on the reactor thread is fine;
anything slower should return a Deferred (or be ``async``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = ["DrainFileCheck", "FileTargets", "PinnedBalancer", "StaticTokens"]


def _lines(path: str) -> List[str]:
    """The non-empty, non-comment lines of `path` (none when it does not exist)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    except FileNotFoundError:
        return []


# -- twistgate.balancers --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PinnedOptions:
    header: str = "X-Pin"


class PinnedBalancer:
    """``balance: {type: example_pinned, header: X-Pin}``."""

    Options = PinnedOptions

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.header = options["header"]
        self.turn = 0

    def choose(self, targets: Sequence[Any], request: Any) -> Any:
        wanted = request.headers.get(self.header)
        if wanted:
            for target in targets:
                if wanted in target.url:
                    return target
        self.turn += 1
        return targets[self.turn % len(targets)]


# -- twistgate.health_checks ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DrainFileOptions:
    path: str


class DrainFileCheck:
    """``health_check: {type: example_drain_file, path: /etc/twistgate/drained, interval: 5s}``."""

    Options = DrainFileOptions

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.path = options["path"]

    def check(self, target: Any) -> bool:
        return target.url not in _lines(self.path)


# -- twistgate.authenticators ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TokenOptions:
    tokens: Dict[str, str]  # token -> consumer
    scopes: Dict[str, List[str]] = dataclasses.field(default_factory=dict)  # consumer -> scopes
    header: str = "Authorization"

    def __post_init__(self) -> None:
        for token in self.tokens:
            if len(token) < 16:
                raise ValueError("every token must be at least 16 characters long")


class StaticTokens:
    """``auth: {partners: {type: example_tokens, tokens: {<token>: acme}}}``."""

    Options = TokenOptions

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.tokens: Dict[str, str] = dict(options["tokens"])
        self.scopes: Dict[str, List[str]] = dict(options["scopes"])
        self.header: str = options["header"]

    async def authenticate(self, request: Any) -> Optional[Dict[str, Any]]:
        # async (or a Deferred) is how a real one would ask a remote service.
        scheme, _, token = (request.headers.get(self.header) or "").partition(" ")
        consumer = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if consumer is None:
            return None  # refused: the route's next authenticator, then 401
        return {"consumer": consumer, "scopes": self.scopes.get(consumer, [])}


# -- twistgate.discovery --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FileOptions:
    path: str


class FileTargets:
    """``targets_from: {type: example_file, path: /etc/twistgate/users.targets, interval: 5s}``."""

    Options = FileOptions

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.path = options["path"]

    def targets(self) -> List[str]:
        return _lines(self.path)
