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
            raise usage.UsageError(str(error))
        try:
            self.gateway_config, files = load_prepared(self["config"])
            self.generation = Generation(self.gateway_config, reactor, files=files)
        except ConfigError as error:
            # One line per issue (file:line: key.path: what), not twistd's usage text.
            raise SystemExit(config_failure(error))
        except OSError as error:
            raise SystemExit(f"twistgate: cannot start: cannot read the configuration: {error}")


def makeService(options: Options) -> Any:
    from twisted.internet import reactor

    from twistgate.service import GatewayService
    from twistgate.startup import quiet_startup_errors

    quiet_startup_errors()  # a port that cannot be opened: the logged line, no traceback
    try:
        service = GatewayService(options.gateway_config, reactor, options.generation)
    except ConfigError as error:
        raise SystemExit(config_failure(error))
    service.ready.addErrback(_stop_not_started, reactor)
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
