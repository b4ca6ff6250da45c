"""
Targeted cache-control fields (RFC 9213): ``CDN-Cache-Control`` and a field
addressed to this gateway alone (``Twistgate-Cache-Control`` by default).

A response may carry directives for one class of caches in a field of its
own.  The gateway's target list is ``[targeted_field, CDN-Cache-Control]``
(``cache.targeted_field``, ``cache.cdn_cache_control``): the first of them
that is present, non-empty and a valid Structured Fields Dictionary (RFC
8941) decides the caching policy, and ``Cache-Control`` and ``Expires`` are
then ignored for this cache (RFC 9213 §2.2).  Otherwise ``Cache-Control``
applies as usual.  The gateway's own field is removed before the response
goes on (it is addressed to the gateway); ``CDN-Cache-Control`` is passed
on, for CDNs in front of it.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, Optional, Sequence, Tuple

from twistgate.policies.cache.directives import ResponseDirectives, response_directives, response_directives_of

CDN_CACHE_CONTROL = b"cdn-cache-control"

_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_INTEGER = re.compile(r"-?\d{1,15}")
_DECIMAL = re.compile(r"-?\d{1,12}\.\d{1,3}")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+.^_`|~:/0-9A-Za-z-]*")
_BYTES = re.compile(r":[A-Za-z0-9+/=]*:")
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f\x7f]|\\["\\])*"')
_INVALID = "invalid"  # an argument that is not delta-seconds: the directive means "stale now"
#: Directives whose argument is an Integer (delta-seconds); a String there is invalid.
_SECONDS = frozenset({"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"})


def parse_dictionary(text: str) -> Optional[Dict[str, Optional[str]]]:
    """
    An RFC 8941 Dictionary as cache directives: ``name -> argument`` (None for
    a bare or ``?1`` member; ``?0`` members are left out), or None when the
    field does not parse (RFC 9213 §2.1: it is then ignored).  Parameters are
    ignored; a repeated key keeps its last value (RFC 8941 §3.2).
    """
    found: Dict[str, Optional[str]] = {}
    rest = text.strip(" \t")
    if not rest:
        return None
    while True:
        key = _KEY.match(rest)
        if key is None:
            return None
        name, rest = key.group(), rest[key.end():]
        value: Optional[str] = None
        present = True
        if rest.startswith("="):
            item, rest = _item(rest[1:])
            if item is _FAIL:
                return None
            if item is False:
                present = False
            elif isinstance(item, _Quoted):
                value = _INVALID if name in _SECONDS else str(item)
            elif item is not True:
                value = item  # type: ignore[assignment]
        rest = _skip_parameters(rest)
        if rest is None:
            return None
        found.pop(name, None)
        if present:
            found[name] = value
        rest = rest.lstrip(" \t")
        if not rest:
            return found
        if not rest.startswith(","):
            return None
        rest = rest[1:].lstrip(" \t")
        if not rest:
            return None  # a trailing comma


_FAIL = object()


class _Quoted(str):
    """A String item (field names for no-cache/private), told apart from an Integer."""


def _item(text: str) -> Tuple[object, str]:
    """A bare item: its directive argument (str), True/False for booleans, or _FAIL."""
    if text.startswith("?"):
        if text[1:2] in ("0", "1"):
            return text[1] == "1", text[2:]
        return _FAIL, text
    for pattern in (_DECIMAL, _INTEGER):
        match = pattern.match(text)
        if match:
            number = match.group()
            if pattern is _DECIMAL or number.startswith("-"):
                return _INVALID, text[match.end():]
            return number, text[match.end():]
    match = _STRING.match(text)
    if match:
        return _Quoted(re.sub(r"\\(.)", r"\1", match.group()[1:-1])), text[match.end():]
    match = _BYTES.match(text) or _TOKEN.match(text)
    if match:
        return (_INVALID if match.re is _BYTES else match.group()), text[match.end():]
    return _FAIL, text


def _skip_parameters(text: str) -> Optional[str]:
    while text.startswith(";"):
        text = text[1:].lstrip(" ")
        key = _KEY.match(text)
        if key is None:
            return None
        text = text[key.end():]
        if text.startswith("="):
            item, text = _item(text[1:])
            if item is _FAIL:
                return None
    return text


def policy(lines_of: Callable[[bytes], Sequence[bytes]], targets: Sequence[bytes]) -> Tuple[ResponseDirectives, bool]:
    """
    The directives that decide how this cache treats a response, and whether
    they came from a targeted field (then ``Expires`` is ignored too).
    ``lines_of(lower-case name)`` gives a field's lines.
    """
    for name in targets:
        lines = lines_of(name)
        if not lines:
            continue
        found = parse_dictionary(", ".join(line.decode("latin-1") for line in lines))
        if found is not None:  # invalid or empty: try the next target, then Cache-Control
            return response_directives_of(found), True
    return response_directives(lines_of(b"cache-control")), False


def pairs_lookup(pairs: Sequence[Tuple[bytes, bytes]]) -> Callable[[bytes], Sequence[bytes]]:
    return lambda lower: [value for name, value in pairs if name.lower() == lower]


def headers_lookup(headers: object) -> Callable[[bytes], Sequence[bytes]]:
    return lambda lower: headers.getRawHeaders(lower) or ()  # type: ignore[attr-defined]
