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

    from twistgate.service import GatewayService

    try:
        return GatewayService(options.gateway_config, reactor, options.generation)
    except ConfigError as error:
        raise SystemExit(f"invalid configuration:\n{error}")
