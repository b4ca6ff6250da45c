"""
SIGUSR1: reopen the access log files, for logrotate.

logrotate renames ``access.log`` and then signals the process
(``postrotate ... kill -USR1``); the gateway closes the renamed file,
after writing out what it buffered, and opens a new one at the configured
path.  Every live configuration generation reopens its own access log (a
generation still retiring after a reload keeps writing until its last
request).  The previous SIGUSR1 handler is called too: twistd installs one
that rotates its own ``--logfile`` file.

The handler only hands over to the reactor thread (a signal may arrive at
any bytecode).
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

from twisted.logger import Logger

__all__ = ["LogReopen"]

_log = Logger()


class LogReopen:
    """Calls ``reopen()`` on the reactor thread whenever the process gets SIGUSR1."""

    def __init__(self, reactor: Any, reopen: Callable[[], Any], *, handle_signals: bool = True) -> None:
        self.reactor = reactor
        self.reopen = reopen
        self.handle_signals = handle_signals
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        if self._installed or not self.handle_signals or not hasattr(signal, "SIGUSR1"):
            return
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.signal(signal.SIGUSR1, self._on_signal)
        self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            signal.signal(signal.SIGUSR1, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False
            self._previous = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self._reopen)
        previous = self._previous
        if callable(previous):
            previous(signum, frame)

    def _reopen(self) -> None:
        try:
            self.reopen()
        except Exception:
            _log.failure("reopening the log files failed")
