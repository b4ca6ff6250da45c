"""
`Headers`: the header fields of a request or response, as bytes.

Every part of the gateway (the HTTP engines on both hops, the policies,
plugins) sees one header type.  Names are case-insensitive (RFC 9110 §5.1)
and stored in canonical form (``content-type`` -> ``Content-Type``, with the
few conventional exceptions such as ``WWW-Authenticate`` and ``ETag``), which
is also how they go out on the wire; values are kept byte for byte, in
order, one list per name.

The methods named like Twisted's (`getRawHeaders`, `setRawHeaders`,
`addRawHeader`, `removeHeader`, `hasHeader`, `getAllRawHeaders`, `copy`)
behave as `twisted.web.http_headers.Headers` does, so plugins written against
it keep working: ``str`` names give ``str`` values.  The gateway's own hot
path uses `raw`, the canonical-name -> values dict, and `canonical_name` for
names it does not hold as constants.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union, overload

__all__ = ["Headers", "InvalidHeaderName", "canonical_name", "fields_into"]

_T = TypeVar("_T")
Name = Union[str, bytes]
Value = Union[str, bytes]

# RFC 9110 §5.6.2: a field name is a token.
_is_token = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z").match

_CASE_MAPPINGS = {
    b"Content-Md5": b"Content-MD5",
    b"Dnt": b"DNT",
    b"Etag": b"ETag",
    b"P3p": b"P3P",
    b"Te": b"TE",
    b"Www-Authenticate": b"WWW-Authenticate",
    b"X-Xss-Protection": b"X-XSS-Protection",
}

#: Bounded: an attacker sending endless name variants must not grow it forever.
_CACHE_LIMIT = 10_000
_canonical_cache: Dict[Union[str, bytes], bytes] = {}


class InvalidHeaderName(ValueError):
    """A header name that is not an RFC 9110 token."""


def canonical_name(name: Name) -> bytes:
    """``name`` as bytes in canonical capitalisation (``x-user-id`` -> ``X-User-Id``)."""
    found = _canonical_cache.get(name)
    if found is not None:
        return found
    raw = name.encode("iso-8859-1") if isinstance(name, str) else name
    if not _is_token(raw):
        raise InvalidHeaderName(raw)
    result = b"-".join([word.capitalize() for word in raw.split(b"-")])
    result = _CASE_MAPPINGS.get(result, result)
    if len(_canonical_cache) < _CACHE_LIMIT:
        _canonical_cache[name] = result
    return result


def _clean(value: Value) -> bytes:
    """A value to store: UTF-8 for text, and never a line break (no header injection)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if b"\r" in data or b"\n" in data or b"\x00" in data:
        data = b" ".join(data.replace(b"\x00", b" ").splitlines())
    return data


class Headers:
    """
    Header fields: canonical name -> list of byte values, in arrival order.

    :ivar raw: the fields themselves.  Keys must be canonical names
        (`canonical_name`); every value list is non-empty.  Code that
        writes here directly must not put CR, LF or NUL into a value.
    """

    __slots__ = ("raw",)

    def __init__(self, fields: Optional[Mapping[Name, Sequence[Value]]] = None) -> None:
        self.raw: Dict[bytes, List[bytes]] = {}
        if fields:
            for name, values in fields.items():
                self.setRawHeaders(name, values)

    @classmethod
    def from_pairs(cls, pairs: Iterable[Tuple[Name, Value]]) -> "Headers":
        """Headers from ``(name, value)`` pairs, repeated names kept in order."""
        headers = cls()
        raw = headers.raw
        for name, value in pairs:
            key = canonical_name(name)
            values = raw.get(key)
            if values is None:
                raw[key] = [_clean(value)]
            else:
                values.append(_clean(value))
        return headers

    # -- the fast, bytes-only API ---------------------------------------------

    @overload
    def get(self, name: bytes, default: Optional[bytes] = None) -> Optional[bytes]: ...

    @overload
    def get(self, name: str, default: Optional[str] = None) -> Optional[str]: ...

    def get(self, name: Name, default: Any = None) -> Any:
        """
        The first value of ``name`` (any case), or ``default``: bytes for a
        bytes name, str (UTF-8, invalid bytes replaced) for a str name, as
        ``request.headers.get(name)`` in the extension points.
        """
        values = self.raw.get(canonical_name(name))
        if not values:
            return default
        return values[0].decode("utf-8", "replace") if isinstance(name, str) else values[0]

    def get_all(self, name: str) -> List[str]:
        """Every value of ``name``, in order, as str (``[]`` when absent)."""
        return [value.decode("utf-8", "replace") for value in self.raw.get(canonical_name(name)) or ()]

    def pairs(self) -> Iterator[Tuple[bytes, bytes]]:
        """Every ``(name, value)``, names canonical, in order."""
        for name, values in self.raw.items():
            for value in values:
                yield name, value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, (str, bytes)):
            return False
        return canonical_name(name) in self.raw

    def __len__(self) -> int:
        return len(self.raw)

    def __bool__(self) -> bool:
        return bool(self.raw)

    # -- Twisted's Headers API ------------------------------------------------

    def hasHeader(self, name: Name) -> bool:
        return canonical_name(name) in self.raw

    def removeHeader(self, name: Name) -> None:
        self.raw.pop(canonical_name(name), None)

    def setRawHeaders(self, name: Name, values: Sequence[Value]) -> None:
        if isinstance(values, (str, bytes)):
            raise TypeError(f"header values must be a sequence of str or bytes, not {type(values).__name__}")
        cleaned = [_clean(value) for value in values]
        key = canonical_name(name)
        if cleaned:
            self.raw[key] = cleaned
        else:
            self.raw.pop(key, None)

    def addRawHeader(self, name: Name, value: Value) -> None:
        self.raw.setdefault(canonical_name(name), []).append(_clean(value))

    @overload
    def getRawHeaders(self, name: bytes) -> Optional[List[bytes]]: ...

    @overload
    def getRawHeaders(self, name: str) -> Optional[List[str]]: ...

    @overload
    def getRawHeaders(self, name: Name, default: _T) -> Union[List[bytes], List[str], _T]: ...

    def getRawHeaders(self, name: Name, default: object = None) -> object:
        """Every value of ``name``; ``str`` values when ``name`` is a ``str``."""
        values = self.raw.get(canonical_name(name))
        if not values:
            return default
        if isinstance(name, str):
            return [value.decode("utf-8", "replace") for value in values]
        return values

    def getAllRawHeaders(self) -> Iterator[Tuple[bytes, List[bytes]]]:
        return iter(self.raw.items())

    def copy(self) -> "Headers":
        clone = Headers()
        clone.raw = {name: list(values) for name, values in self.raw.items()}
        return clone

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self.raw == other.raw
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self.raw!r})"


def fields_into(raw: Dict[bytes, List[bytes]], lines: bytes) -> None:
    """
    Ready header lines (`ProxyRequest.prepared_fields`,
    `ProxyResponse.prepared_fields`) set into a `Headers.raw` dict, for a
    side that writes the head itself from the fields (HTTP/2, twisted.web,
    a traced attempt, a streamed answer).
    """
    for line in lines.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b": ")
            raw[name] = [value]
