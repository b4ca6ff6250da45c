"""
twistd's own log on standard error, so that standard output carries nothing
but the JSON access log (``access_log: {path: "-"}``)::

    twistd --nodaemon --pidfile= --logger=twistgate.logs.stderr twistgate --config gw.yaml

``--logger`` names a log observer factory; twistd calls it once, before it
redirects ``sys.stdout`` and ``sys.stderr`` into the log.  A container
runtime or systemd then collects the two streams separately (or together:
each line is whole either way).
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.logger import textFileLogObserver

__all__ = ["stderr"]


def stderr() -> Any:
    """The text log observer twistd uses for ``--logfile=-``, writing to standard error instead."""
    return textFileLogObserver(sys.stderr)
