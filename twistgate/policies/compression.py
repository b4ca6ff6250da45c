"""
Response compression (gzip, brotli) per route, negotiated with the client's
`Accept-Encoding` (RFC 9110 §12.5.3, §8.4).

The stage runs after the cache (ORDER_COMPRESSION), so the cache stores
identity bodies and every client, hits included, gets the coding it asked
for.  It never touches a response that is already encoded, marked
`no-transform`, partial or a range answer, an event stream, small, or of a
type that does not compress.  Compressible responses get
`Vary: Accept-Encoding` whether or not this client's copy is compressed, and
a compressed copy gets a weak ETag (it is another representation, RFC 9110
§8.8.3).  Each chunk is flushed as it passes, so streamed responses keep
streaming.
"""

from __future__ import annotations

import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attrs

from twistgate.fields import first_int, parse_directives, split_list
from twistgate.config._node import Node
from twistgate.config.model import KiB, Location, RouteConfig
from twistgate.messages import ProxyRequest, ProxyResponse
from twistgate.plugins.hookspecs import hookimpl
from twistgate.policies import BLIND, Policy

try:
    import brotli
except ImportError:  # pragma: no cover - brotli is a dependency
    brotli = None

KEYS = ("algorithms", "min_size", "types", "gzip_level", "brotli_quality")
ALGORITHMS = ("br", "gzip") if brotli is not None else ("gzip",)
DEFAULT_TYPES = (
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "application/x-ndjson",
    "application/graphql-response+json",
    "image/svg+xml",
)
#: Never compressed, whatever `types` says: buffering would delay events.
NEVER = frozenset({"text/event-stream"})
_NO_BODY = frozenset({204, 206, 304})
_ALIASES = {"x-gzip": "gzip"}
_NEGOTIATED_LIMIT = 256  # distinct Accept-Encoding values remembered


@attrs.frozen(kw_only=True)
class CompressionConfig:
    enabled: bool = True
    algorithms: Tuple[str, ...] = ALGORITHMS  # server preference, first wins ties
    min_size: int = 1 * KiB
    types: Tuple[str, ...] = DEFAULT_TYPES
    gzip_level: int = 5
    brotli_quality: int = 4
    location: Location = attrs.field(default=Location(), eq=False)


def parse_compression(node: Node) -> Optional[CompressionConfig]:
    """``compression: true``, ``false`` (off here) or a mapping of the keys above."""
    if node.kind == "boolean":
        enabled = node.boolean()
        return None if enabled is None else CompressionConfig(enabled=enabled, location=node.location(at_key=True))
    fields = node.mapping(KEYS)
    if fields is None:
        return None
    defaults = CompressionConfig()
    return CompressionConfig(
        algorithms=fields.read("algorithms", _algorithms, defaults.algorithms),
        min_size=fields.read("min_size", Node.size, defaults.min_size),
        types=fields.read("types", _media_types, defaults.types),
        gzip_level=fields.read("gzip_level", lambda n: _bounded(n, 1, 9), defaults.gzip_level),
        brotli_quality=fields.read("brotli_quality", lambda n: _bounded(n, 0, 11), defaults.brotli_quality),
        location=node.location(at_key=True),
    )


def _bounded(node: Node, low: int, high: int) -> Optional[int]:
    value = node.integer(min=low)
    if value is not None and value > high:
        node.issue(f"must be at most {high}, got {value}")
        return None
    return value


def _algorithms(node: Node) -> Optional[Tuple[str, ...]]:
    chosen: List[str] = []
    for item in node.sequence(non_empty=True) or ():
        name = item.choice(("br", "gzip"))
        if name == "br" and brotli is None:  # pragma: no cover - brotli is a dependency
            item.issue("brotli is not installed (pip install brotli)")
        elif name is not None and name not in chosen:
            chosen.append(name)
    return tuple(chosen) or None


def _media_types(node: Node) -> Optional[Tuple[str, ...]]:
    found: List[str] = []
    for item in node.sequence(non_empty=True) or ():
        text = item.string()
        if text is None:
            continue
        kind, slash, sub = text.lower().partition("/")
        if not slash or not kind or not sub or kind == "*":
            item.issue(f"expected a media type like text/* or application/json, got {text!r}")
            continue
        found.append(text.lower())
    return tuple(found)


class _TypeMatcher:
    """`types` compiled once: exact types, `x/*` prefixes and `x/*+suffix` patterns."""

    def __init__(self, types: Sequence[str]) -> None:
        self.exact = frozenset(t for t in types if "*" not in t)
        self.prefixes = tuple(t[:-1] for t in types if t.endswith("/*"))
        self.suffixes = tuple((t.split("/*", 1)[0] + "/", t.split("*", 1)[1]) for t in types if "/*+" in t)

    def __call__(self, content_type: bytes) -> bool:
        media = content_type.split(b";", 1)[0].strip().lower().decode("latin-1")
        if media in NEVER:
            return False
        if media in self.exact or media.startswith(self.prefixes):
            return True
        return any(media.startswith(kind) and media.endswith(suffix) for kind, suffix in self.suffixes)


class _Gzip:
    __slots__ = ("_z",)

    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip container

    def write(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._z.flush()


class _Brotli:
    __slots__ = ("_c",)

    def __init__(self, quality: int) -> None:
        self._c = brotli.Compressor(quality=quality)

    def write(self, data: bytes) -> bytes:
        return self._c.process(data) + self._c.flush()

    def finish(self) -> bytes:
        return self._c.finish()


def accepted_codings(lines: Sequence[bytes]) -> Dict[str, float]:
    """`Accept-Encoding` as coding -> weight (RFC 9110 §12.4.2); bad weights count as 0."""
    weights: Dict[str, float] = {}
    for line in lines:
        for item in split_list(line.decode("latin-1")):
            coding, _, params = item.partition(";")
            coding = _ALIASES.get(coding.strip().lower(), coding.strip().lower())
            weight = 1.0
            for param in params.split(";"):
                name, _, value = param.partition("=")
                if name.strip().lower() == "q":
                    try:
                        weight = max(0.0, min(1.0, float(value.strip())))
                    except ValueError:
                        weight = 0.0
            weights.setdefault(coding, weight)
    return weights


class CompressionStage:
    def __init__(self, config: CompressionConfig) -> None:
        self.config = config
        self.algorithms = config.algorithms
        self.compressible = _TypeMatcher(config.types)
        self._negotiated: Dict[Tuple[bytes, ...], Optional[str]] = {}

    def choose(self, accept: Optional[Sequence[bytes]]) -> Optional[str]:
        """The coding for this client: highest weight, then our preference; None for identity."""
        if not accept:
            return None
        key = tuple(accept)
        if key in self._negotiated:
            return self._negotiated[key]
        weights = accepted_codings(accept)
        best, best_weight = None, 0.0
        for coding in self.algorithms:
            weight = weights.get(coding, weights.get("*", 0.0))
            if weight > best_weight:
                best, best_weight = coding, weight
        if len(self._negotiated) >= _NEGOTIATED_LIMIT:
            self._negotiated.clear()
        self._negotiated[key] = best
        return best

    @hookimpl
    def on_response(self, request: ProxyRequest, response: ProxyResponse) -> None:
        if request.method == b"HEAD" or response.status < 200 or response.status in _NO_BODY:
            return
        headers = response.headers
        content_type = headers.getRawHeaders(b"Content-Type")
        if not content_type or not self.compressible(content_type[0]):
            return
        if _encoded(headers) or "no-transform" in parse_directives(headers.getRawHeaders(b"Cache-Control")):
            return
        size = len(response.body) if response.body is not None else first_int(headers.getRawHeaders(b"Content-Length"))
        if size is not None and size < self.config.min_size:
            return
        _add_vary(headers)  # from here on, what this client gets depends on Accept-Encoding
        if headers.hasHeader(b"Content-Range") or request.headers.hasHeader(b"Range"):
            return
        coding = self.choose(request.headers.getRawHeaders(b"Accept-Encoding"))
        if coding is None:
            return
        headers.setRawHeaders(b"Content-Encoding", [coding.encode("ascii")])
        headers.removeHeader(b"Content-Length")
        headers.removeHeader(b"Accept-Ranges")
        headers.removeHeader(b"Content-MD5")
        etag = headers.getRawHeaders(b"ETag")
        if etag and not etag[0].startswith((b"W/", b"w/")):
            headers.setRawHeaders(b"ETag", [b"W/" + etag[0]])
        body_filter: Any = _Brotli(self.config.brotli_quality) if coding == "br" else _Gzip(self.config.gzip_level)
        if response.body_filters is None:
            response.body_filters = []
        response.body_filters.append(body_filter)


def _encoded(headers: Any) -> bool:
    codings = headers.getRawHeaders(b"Content-Encoding")
    return bool(codings) and any(c.strip().lower() not in (b"", b"identity") for c in codings)


def _add_vary(headers: Any) -> None:
    lines = headers.getRawHeaders(b"Vary") or []
    names = {name.lower() for line in lines for name in split_list(line.decode("latin-1"))}
    if "accept-encoding" not in names and "*" not in names:
        headers.addRawHeader(b"Vary", b"Accept-Encoding")


def _build(route: RouteConfig, services: Any) -> Optional[CompressionStage]:
    """The route's own ``compression``, else the top-level one as every route's default."""
    config = route.policies.get("compression") or services.config.sections.get("compression")
    return CompressionStage(config) if config is not None and config.enabled else None


#: Compression is outermost: it encodes whatever leaves, cache hits included.
#: (It reads ``Accept-Encoding`` and ``Range``, and edits the coding fields on the way out.)
POLICY = Policy(name="compression", key="compression", parse=parse_compression, build=_build, every_route=True, sight=BLIND)
