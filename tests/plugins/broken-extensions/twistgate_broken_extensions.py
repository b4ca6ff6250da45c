"""
Test only: one extension per group whose method misbehaves as the file at
``mode_file`` says, read on every call: ``raise``, ``hang`` (a Deferred
that never fires), ``wrong`` (an answer of the wrong type) or ``ok``.
Discovery answers ``ok`` with the URLs on the file's following lines.
"""

import dataclasses
from typing import Any, List

from twisted.internet.defer import Deferred


@dataclasses.dataclass(frozen=True)
class Options:
    mode_file: str


def _read(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


class _Broken:
    Options = Options

    def __init__(self, options: Any) -> None:
        self.path = options["mode_file"]

    def _misbehave(self, ok: Any, wrong: Any) -> Any:
        lines = _read(self.path)
        mode = lines[0] if lines else "ok"
        if mode == "raise":
            raise RuntimeError(f"{type(self).__name__} is broken")
        if mode == "hang":
            return Deferred()
        if mode == "wrong":
            return wrong
        return ok(lines[1:])


class Balancer(_Broken):
    def choose(self, targets: Any, request: Any) -> Any:
        return self._misbehave(lambda _: targets[0], "not a target")


class HealthCheck(_Broken):
    def check(self, target: Any) -> Any:
        return self._misbehave(lambda _: True, "yes")


class Authenticator(_Broken):
    def authenticate(self, request: Any) -> Any:
        return self._misbehave(lambda _: {"consumer": "broken-but-ok"}, ["consumer"])


class Discovery(_Broken):
    def targets(self) -> Any:
        return self._misbehave(lambda urls: urls, {"not": "a list"})


def refuse(options: Any) -> Any:
    raise ValueError("this factory refuses every configuration")
