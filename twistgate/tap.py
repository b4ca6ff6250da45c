"""`twistd twistgate`: options and the service maker.  The only module that imports the reactor."""

from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import Any

from twisted.python import usage
from twisted.python.failure import Failure

from twistgate.config import ConfigError
from twistgate.startup import config_failure

#: The exit status of a gateway that did not start (a plugin's ``on_startup`` failed).
EXIT_NOT_STARTED = 1


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = "Run the twistgate API gateway."
    optParameters = [["config", "c", "etc/gw.yaml", "The gateway's YAML configuration file."]]

    def postOptions(self) -> None:
        from twisted.internet import reactor

        from twistgate import _twisted_compat
        from twistgate.generation import Generation
        from twistgate.validation import load_prepared

        try:
            _twisted_compat.check()
        except _twisted_compat.IncompatibleTwisted as error:
            _refuse(str(error))
        try:
            self.gateway_config, files = load_prepared(self["config"])
            self.generation = Generation(self.gateway_config, reactor, files=files)
        except ConfigError as error:
            # One line per issue (file:line: key.path: what), not twistd's usage text; SystemExit
            # is status 1 on every twistd release (before 26 a UsageError exited 0).
            raise SystemExit(config_failure(error))
        except OSError as error:
            raise SystemExit(f"twistgate: cannot start: cannot read the configuration: {error}")


def _refuse(message: str) -> None:
    """
    Refuse to start.  twistd 26 exits with status 1 after a `UsageError`;
    before 26 (25.5 is the newest for Python 3.9, so for Debian's PyPy) it
    exits 0, which a supervisor (systemd, a container runtime, CI) would take
    for success: there the message goes to standard error with status 1.
    """
    from twisted import version

    if version.major < 26:
        raise SystemExit(f"twistd twistgate: {message}")
    raise usage.UsageError(message)


def makeService(options: Options) -> Any:
    from twisted.internet import reactor

    from twistgate.gc_tuning import settle
    from twistgate.service import GatewayService
    from twistgate.startup import quiet_startup_errors
    from twistgate.workers.settings import worker_count

    quiet_startup_errors()  # a port that cannot be opened: the logged line, no traceback
    count = worker_count(options.gateway_config.sections.get("workers"))
    if count > 1:
        return _supervisor(options, reactor, count)
    try:
        service = GatewayService(options.gateway_config, reactor, options.generation)
    except ConfigError as error:
        raise SystemExit(config_failure(error))
    service.ready.addCallbacks(settle, _stop_not_started, errbackArgs=(reactor,))
    service.reloader.after_retire.append(settle)
    return service


def _stop_not_started(failure: Failure, reactor: Any) -> None:
    """
    The gateway will not serve (the service logged why, naming the plugin):
    stop the reactor, and make the process exit non-zero.

    twistd calls ``startService`` before it runs the reactor, and once the
    reactor has stopped it always exits 0: it has no way for a service to
    say otherwise.  So the status is set at interpreter exit, after twistd
    has removed its PID file and closed its log.
    """
    reactor.callWhenRunning(reactor.stop)  # now if running, else as soon as twistd runs it
    atexit.register(_exit_now, EXIT_NOT_STARTED)


def _exit_now(status: int) -> None:  # pragma: no cover - runs at interpreter exit (tests run twistd)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _supervisor(options: Options, reactor: Any, count: int) -> Any:
    """``workers`` > 1: this process supervises the workers; each worker builds its own generation."""
    from twistgate.workers import snapshot
    from twistgate.workers.supervisor import Supervisor

    options.generation.close()  # built only to check the configuration in full
    try:
        text, config = snapshot.read_checked(options["config"])
    except ConfigError as error:
        raise SystemExit(config_failure(error))
    return Supervisor(config, text, reactor, count)
