"""
Test only: one extension per group whose method misbehaves as the file at
``mode_file`` says, read on every call: ``raise``, ``hang`` (a Deferred
that never fires), ``wrong`` (an answer of the wrong type) or ``ok``.
Discovery answers ``ok`` with the URLs on the file's following lines.
And one ``twistgate`` plugin, `SlowStart`, whose ``on_startup`` is slow or
fails.
"""

import dataclasses
from typing import Any, List

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from twistgate.plugins import hookimpl


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



class SlowStart:
    """
    A ``twistgate`` plugin (entry point ``slow_start``) whose ``on_startup``
    takes ``delay`` seconds, then succeeds or, with ``fail: <message>``,
    fails.  Its responses say whether ``on_startup`` had finished
    (``X-Started: yes``) when they were answered.
    """

    def __init__(self, options: Any, context: Any) -> None:
        self.delay = float(options.get("delay", 0))
        self.fail = options.get("fail")
        self.clock = context.clock
        self.started = False

    def _done(self) -> None:
        if self.fail:
            raise RuntimeError(self.fail)
        self.started = True

    @hookimpl
    def on_startup(self) -> Any:
        if self.delay <= 0:
            return self._done()
        return deferLater(self.clock, self.delay, self._done)

    @hookimpl
    def on_response(self, response: Any) -> None:
        response.headers.setRawHeaders(b"X-Started", [b"yes" if self.started else b"no"])
