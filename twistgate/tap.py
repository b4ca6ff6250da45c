"""`twistd twistgate`: options and the service maker.  The only module that imports the reactor."""

from __future__ import annotations

from typing import Any

from twisted.python import usage

from twistgate.config import ConfigError


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = "Run the twistgate API gateway."
    optParameters = [["config", "c", "etc/gw.yaml", "The gateway's YAML configuration file."]]

    def postOptions(self) -> None:
        from twisted.internet import reactor

        from twistgate import _twisted_compat
        from twistgate.generation import Generation
        from twistgate.validation import load_checked

        try:
            _twisted_compat.check()
        except _twisted_compat.IncompatibleTwisted as error:
            _refuse(str(error))
        try:
            self.gateway_config = load_checked(self["config"])
            self.generation = Generation(self.gateway_config, reactor)
        except ConfigError as error:
            _refuse(f"invalid configuration:\n{error}")
        except OSError as error:
            _refuse(f"cannot read the configuration: {error}")


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

    from twistgate.service import GatewayService
    from twistgate.workers.settings import worker_count

    count = worker_count(options.gateway_config.sections.get("workers"))
    if count > 1:
        return _supervisor(options, reactor, count)
    try:
        return GatewayService(options.gateway_config, reactor, options.generation)
    except ConfigError as error:
        raise SystemExit(f"invalid configuration:\n{error}")


def _supervisor(options: Options, reactor: Any, count: int) -> Any:
    """``workers`` > 1: this process supervises the workers; each worker builds its own generation."""
    from twistgate.workers import snapshot
    from twistgate.workers.supervisor import Supervisor

    options.generation.close()  # built only to check the configuration in full
    try:
        text, config = snapshot.read_checked(options["config"])
    except ConfigError as error:
        raise SystemExit(f"invalid configuration:\n{error}")
    return Supervisor(config, text, reactor, count)
