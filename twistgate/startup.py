"""
What an operator reads when the gateway cannot start: one line, no traceback.

A port already in use, a port below 1024 without the privilege to bind it,
an address the host does not have: `listen_failure` says which listener,
which endpoint and what to do, and `GatewayService.privilegedStartService`
raises it as a `StartupError`.  Under twistd the line is logged (critical,
to wherever ``--logfile`` points), twistd removes its PID file and tells a
daemonising parent, and the exception then reaches the interpreter's top
level, where `quiet_startup_errors` (installed by `twistgate.tap`) keeps
Python from printing a traceback: the process exits with status 1.

Problems the configuration file can show (a missing certificate, an
unreadable key, a bad value) are found earlier, while twistd parses its
options: `config_failure` makes them the same kind of short message.
"""

from __future__ import annotations

import errno
import sys
from typing import Any, Callable, Optional, TypeVar

from twisted.internet.error import CannotListenError
from twisted.logger import Logger

__all__ = ["StartupError", "config_failure", "listen_failure", "listening", "quiet_startup_errors"]

_T = TypeVar("_T")

_log = Logger(namespace="twistgate")

#: How to bind ports below 1024 without running as root.
PRIVILEGED_PORT_HINT = (
    "ports below 1024 need a privilege: run as an unprivileged user with "
    "AmbientCapabilities=CAP_NET_BIND_SERVICE (systemd), a systemd socket "
    "(endpoint: systemd:domain=INET:index=0), or setcap cap_net_bind_service=+ep "
    "on the Python binary; or use a port above 1023"
)


class StartupError(Exception):
    """The gateway cannot start; the message is the whole story (one line)."""


def listen_failure(what: str, endpoint: str, error: BaseException) -> StartupError:
    """
    A `StartupError` for a listening port that could not be opened.

    :param what: the listener as the operator knows it, e.g. ``listener 'public'``.
    :param endpoint: its endpoint string, e.g. ``tcp:8080``.
    """
    cause = error.socketError if isinstance(error, CannotListenError) else error
    code = getattr(cause, "errno", None)
    port = getattr(error, "port", None)
    interface = getattr(error, "interface", "") or ""
    where = f"{what} ({endpoint})"
    if code == errno.EADDRINUSE:
        return StartupError(f"{where}: port {port} is already in use (another process listens on it)")
    if code in (errno.EACCES, errno.EPERM):
        if isinstance(port, int) and 0 < port < 1024:
            return StartupError(f"{where}: permission denied to listen on port {port}: {PRIVILEGED_PORT_HINT}")
        return StartupError(f"{where}: permission denied to listen: {_strerror(cause)}")
    if code == errno.EADDRNOTAVAIL:
        return StartupError(f"{where}: the address {interface or '?'} is not an address of this host")
    return StartupError(f"{where}: cannot listen: {_strerror(cause)}")


def config_failure(error: Any) -> str:
    """The text for a configuration that cannot be loaded: one line per issue."""
    issues = getattr(error, "issues", None)
    if not issues:
        return f"twistgate: cannot start: {error}"
    if len(issues) == 1:
        return f"twistgate: cannot start: {issues[0]}"
    return "twistgate: cannot start: invalid configuration:\n" + "\n".join(f"  {issue}" for issue in issues)


def _strerror(error: Any) -> str:
    text = getattr(error, "strerror", None)
    return str(text) if text else str(error)


def log_startup_error(error: StartupError) -> None:
    _log.critical("twistgate: cannot start: {message}", message=str(error))


def listening(what: str, endpoint: str, start: Callable[[], _T]) -> _T:
    """``start()`` (which binds a port); a port that cannot be opened is logged and raised as one `StartupError`."""
    try:
        return start()
    except CannotListenError as error:
        failure = listen_failure(what, endpoint, error)
        log_startup_error(failure)
        raise failure from None


def quiet_startup_errors(hook: Optional[Callable[..., Any]] = None) -> Callable[..., Any]:
    """
    Install (and return) a ``sys.excepthook`` that ends the process quietly
    for a `StartupError` (it was logged already; the interpreter then exits
    with status 1) and hands anything else to the previous hook.
    """
    previous = hook if hook is not None else sys.excepthook
    if getattr(previous, "_twistgate_quiet", False):
        return previous

    def excepthook(kind: Any, value: Any, traceback: Any) -> None:
        if isinstance(value, StartupError):
            return
        previous(kind, value, traceback)

    excepthook._twistgate_quiet = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook
    return excepthook
