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
            raise usage.UsageError(f"invalid configuration:\n{error}")
        except OSError as error:
            raise usage.UsageError(f"cannot read the configuration: {error}")


def makeService(options: Options) -> Any:
    from twisted.internet import reactor

    from twistgate.gc_tuning import settle
    from twistgate.service import GatewayService

    try:
        service = GatewayService(options.gateway_config, reactor, options.generation)
    except ConfigError as error:
        raise SystemExit(f"invalid configuration:\n{error}")
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
