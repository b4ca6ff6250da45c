"""
What an extension (balancer, health check, authenticator) is handed: small
read-only views over the gateway's own objects.  They copy nothing, so
building one per request costs one allocation, and an extension cannot
change a target's state or the request the gateway forwards.

`TargetInfo.from_url` and `RequestInfo.build` make stand-alone ones for an
extension's unit tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

if TYPE_CHECKING:
    from twistgate.messages import ProxyRequest
    from twistgate.upstream.target import Target

__all__ = ["RequestHeaders", "RequestInfo", "TargetInfo", "request_of", "target_of"]


class TargetInfo:
    """
    One target of an upstream, as an extension sees it.

    :ivar url: ``scheme://host[:port]`` (str): as configured, or as listed
        by discovery.  DNS discovery can give several addresses one URL.
    :ivar address: the IP address DNS discovery resolved the URL's host
        to (str), or None.
    :ivar weight: its relative share (int >= 1).
    """

    __slots__ = ("_target",)

    def __init__(self, target: "Target") -> None:
        self._target = target

    @property
    def url(self) -> str:
        return self._target.url

    @property
    def address(self) -> Optional[str]:
        return self._target.address

    @property
    def weight(self) -> int:
        return int(self._target.weight)

    def __repr__(self) -> str:
        return f"<TargetInfo {self._target.label}>"

    @classmethod
    def from_url(cls, url: str, weight: int = 1) -> "TargetInfo":
        """A target of no upstream, for tests: ``TargetInfo.from_url("http://10.0.0.5:8080")``."""
        from twistgate.config._upstreams import split_target_url
        from twistgate.config.model import TargetConfig
        from twistgate.upstream.target import Target

        scheme, host, port = split_target_url(url)
        return cls(Target(TargetConfig(url=url, scheme=scheme, host=host, port=port, weight=weight)))


class RequestHeaders:
    """The request's headers, read-only; names are case-insensitive."""

    __slots__ = ("_headers",)

    def __init__(self, headers: Any) -> None:
        self._headers = headers

    def get(self, name: str) -> Optional[str]:
        """The first value of header `name` (str, UTF-8 decoded as plugins' `Headers.get`), or None."""
        values = self._headers.getRawHeaders(name.encode("latin-1"))
        return values[0].decode("utf-8", "replace") if values else None

    def get_all(self, name: str) -> List[str]:
        """Every value of header `name`, in order (empty when absent)."""
        return [v.decode("utf-8", "replace") for v in self._headers.getRawHeaders(name.encode("latin-1")) or ()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._headers.getRawHeaders(name.encode("latin-1")))


class RequestInfo:
    """
    The request, as an extension sees it.

    :ivar method: ``"GET"``, ``"POST"``... (str).
    :ivar path: the path as it will be forwarded (str, percent-encoded, no
        query; the route's ``strip_prefix`` / ``add_prefix`` applied).
    :ivar client_ip: the client address as believed through
        ``trusted_proxies`` (str).
    :ivar headers: `RequestHeaders`: ``headers.get(name)`` is a str or None.
    :ivar request_id: the request's ``X-Request-ID`` (str), for logs.
    """

    __slots__ = ("_request", "_headers")

    def __init__(self, request: "ProxyRequest") -> None:
        self._request = request
        self._headers: Optional[RequestHeaders] = None

    @property
    def method(self) -> str:
        return self._request.method.decode("ascii", "replace")

    @property
    def path(self) -> str:
        return self._request.path

    @property
    def client_ip(self) -> str:
        return self._request.client_ip or self._request.peer_ip or ""

    @property
    def request_id(self) -> str:
        return self._request.request_id

    @property
    def headers(self) -> RequestHeaders:
        if self._headers is None:
            self._headers = RequestHeaders(self._request.headers)
        return self._headers

    def __repr__(self) -> str:
        return f"<RequestInfo {self.method} {self.path}>"

    @classmethod
    def build(
        cls,
        method: str = "GET",
        path: str = "/",
        *,
        client_ip: str = "127.0.0.1",
        headers: Optional[Mapping[str, str]] = None,
        request_id: str = "test",
    ) -> "RequestInfo":
        """A request of no client, for tests."""
        from twistgate.headers import Headers

        from twistgate.messages import ProxyRequest

        raw: Dict[bytes, List[bytes]] = {
            k.encode("latin-1"): [v.encode("latin-1")] for k, v in (headers or {}).items()
        }
        request = ProxyRequest(
            method=method.encode("ascii"), path=path, headers=Headers(raw), client_ip=client_ip, request_id=request_id
        )
        return cls(request)


def target_of(view: TargetInfo) -> "Target":
    """The gateway's target behind a view (for the built-ins' public interface)."""
    return view._target


def request_of(view: RequestInfo) -> "ProxyRequest":
    """The gateway's request behind a view (for the built-ins' public interface)."""
    return view._request
