"""
``hide_server_header: true``: the upstream's ``Server`` field never reaches
the client (nginx hides it by default with ``proxy_hide_header``; Traefik
users set it empty).  Meant for ``defaults:``, so every route has it; a
route's own ``headers.response.set`` can still name a ``Server`` of its own,
since this layer runs before that one on the way out.
"""

from __future__ import annotations

from typing import Any, Optional

from twistgate.config._node import Node
from twistgate.config.model import RouteConfig
from twistgate.messages import ProxyResponse
from twistgate.plugins.hookspecs import hookimpl
from twistgate.policies import NOT_FORWARDING, Policy

__all__ = ["POLICY", "ServerHeaderStage"]


def _parse(node: Node) -> Optional[bool]:
    return node.boolean()


class ServerHeaderStage:
    @hookimpl
    def on_response(self, response: ProxyResponse) -> None:
        response.headers.raw.pop(b"Server", None)


def _build(route: RouteConfig, services: Any) -> Optional[ServerHeaderStage]:
    return ServerHeaderStage() if route.policies["hide_server_header"] else None


#: Removes the upstream's Server header.
POLICY = Policy(name="hide_server_header", key="hide_server_header", parse=_parse, build=_build, sight=NOT_FORWARDING)  # the answer only
