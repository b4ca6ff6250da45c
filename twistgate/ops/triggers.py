"""
What starts a reload besides the admin API: SIGHUP, and a watched file.

The signal handler only hands over to the reactor (a signal may arrive at
any bytecode); the watcher polls the file's stat (cheap, never blocking for
long) on a `LoopingCall` on the gateway's clock.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Callable, Optional, Tuple

from twisted.internet.task import LoopingCall

__all__ = ["ReloadTriggers"]

FileStamp = Tuple[int, int, int]


def stat_of(path: str) -> Optional[FileStamp]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ReloadTriggers:
    """Calls ``reload(reason)`` on SIGHUP and, when configured, when the file changes."""

    def __init__(self, reactor: Any, reload: Callable[[str], Any], *, handle_signals: bool = True) -> None:
        self.reactor = reactor
        self.reload = reload
        self.handle_signals = handle_signals
        self._previous_sighup: Any = None
        self._watcher: Optional[LoopingCall] = None
        self._watched: Optional[FileStamp] = None

    # -- SIGHUP ----------------------------------------------------------------

    def install(self) -> None:
        if not self.handle_signals or not hasattr(signal, "SIGHUP"):
            return
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous_sighup = signal.signal(signal.SIGHUP, self._on_sighup)

    def uninstall(self) -> None:
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        self.unwatch()

    def _on_sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload, "SIGHUP")

    # -- the file watch ----------------------------------------------------------

    def watch(self, config: Any) -> None:
        """Watch ``config.source`` if its ``reload.watch`` asks for it (and stop watching otherwise)."""
        settings = config.sections.get("reload")
        source = config.source
        self.unwatch()
        if settings is None or not settings.watch or source is None:
            return
        self._watched = stat_of(source)
        self._watcher = LoopingCall(self._check_file, source)
        self._watcher.clock = self.reactor
        self._watcher.start(settings.interval, now=False)

    @property
    def watching(self) -> bool:
        return self._watcher is not None and self._watcher.running

    def unwatch(self) -> None:
        if self._watcher is not None and self._watcher.running:
            self._watcher.stop()
        self._watcher = None

    def seen(self, source: Optional[str]) -> None:
        """The file was just read (a reload from any trigger): its current state is not a change."""
        if source is not None:
            self._watched = stat_of(source)

    def _check_file(self, source: str) -> Any:
        stamp = stat_of(source)
        if stamp is None or stamp == self._watched:
            return None
        self._watched = stamp  # a rejected file is not retried until it changes again
        return self.reload("file changed")
