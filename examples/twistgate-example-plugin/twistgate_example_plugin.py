"""
An example twistgate plugin.

Options:

``response_headers``
    A mapping of header names to values, set on every response.
``block_paths``
    Exact paths answered with ``403 {"blocked": path}`` instead of being
    forwarded.

The class itself is the factory: ``ExampleHeaders(options, context)``
validates the options (raising ``ValueError``/``TypeError``) and is the
plugin.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from twistgate.plugins import PluginContext, ProxyRequest, ProxyResponse, Response, hookimpl

__all__ = ["ExampleHeaders"]

_OPTIONS = ("response_headers", "block_paths")


class ExampleHeaders:
    def __init__(self, options: Mapping[str, Any], context: PluginContext) -> None:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)}; options: {', '.join(_OPTIONS)}")

        headers = options.get("response_headers") or {}
        if not isinstance(headers, Mapping):
            raise TypeError("response_headers must be a mapping of header name to value")
        for name, value in headers.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"response_headers: {name!r}: names and values must be strings")
        self.response_headers = [
            (name.encode("latin-1"), [value.encode("latin-1")]) for name, value in headers.items()
        ]

        paths = options.get("block_paths") or []
        if not isinstance(paths, (list, tuple)) or not all(isinstance(p, str) for p in paths):
            raise TypeError("block_paths must be a list of paths")
        self.block_paths = frozenset(paths)

    @hookimpl
    def on_request(self, request: ProxyRequest) -> Optional[Response]:
        if request.path in self.block_paths:
            return Response.json({"blocked": request.path}, status=403)
        return None

    @hookimpl
    def on_response(self, response: ProxyResponse) -> None:
        for name, values in self.response_headers:
            response.headers.setRawHeaders(name, values)
