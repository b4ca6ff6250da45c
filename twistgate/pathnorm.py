"""
Request path normalisation.

The gateway matches routes against, and forwards upstream, one canonical form
of the request path, so that ``/public/../admin``, ``/public/%2e%2e/admin`` and
``//admin`` cannot reach ``/admin`` while being judged by another route's
policy.  The rules follow RFC 3986 section 6.2.2 (syntax-based normalisation)
and Envoy's ``normalize_path`` plus ``merge_slashes``:

* the path must start with ``/``;
* escapes of unreserved characters (``ALPHA DIGIT - . _ ~``) are decoded, the
  hex digits of every other escape are upper-cased, and ``%2F`` stays encoded
  (it is data inside a segment, never a separator);
* malformed escapes, NUL (raw or ``%00``), control characters, space,
  backslash, ``#`` and ``?`` are rejected with `InvalidPath`;
* bytes that are not allowed raw in a path but are harmless (non-ASCII and
  ``" < > [ ] ^ ` { | }``) are percent-encoded;
* duplicate slashes are merged and ``.``/``..`` segments removed (never above
  the root); a trailing ``/`` is kept, and ``/a/.`` becomes ``/a/``;
* path parameters are rejected: a raw ``;`` anywhere in the path (Tomcat,
  Jetty and Spring drop ``;...`` from each segment before mapping, so
  ``/private;x=1/secret`` would reach ``/private/secret`` while the gateway
  judged it by another route, and ``/public/..;/private`` would climb out of
  ``/public``), and a dot segment followed by an escaped one (``..%3B``).
  An escaped ``%3B`` elsewhere is data, like ``%2F``.  Refusing, not
  stripping, is deliberate: the gateway cannot know which upstreams read
  ``;`` as a parameter, and Spring Security's default firewall refuses the
  same requests.

The common case, a path that is already normal, costs one regular expression
match and one ASCII decode.
"""

from __future__ import annotations

import re
from typing import List, Optional

from twistgate.errors import BadRequest

__all__ = ["InvalidPath", "normalize_path"]


class InvalidPath(BadRequest, ValueError):
    """The request path cannot be normalised safely; the gateway answers 400."""

    code = "invalid_path"
    default_message = "The request path is invalid."


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SUB_DELIMS_ETC = b"!$&'()*+,=:@"  # ";" (path parameters) is refused
_HEXDIGITS = frozenset(b"0123456789ABCDEFabcdef")

# What each raw byte (other than "%" and "/") becomes: itself, an escape, or
# None for "reject".
_RAW: List[Optional[str]] = [None] * 256
for _b in _UNRESERVED | frozenset(_SUB_DELIMS_ETC):
    _RAW[_b] = chr(_b)
for _b in list(b'"<>[]^`{|}') + list(range(0x80, 0x100)):
    _RAW[_b] = "%{:02X}".format(_b)
# Rejected (left as None): 0x00-0x1F, space, 0x7F, backslash, "#", "?", ";".
del _b

# An already-normal path: non-empty segments of raw pchars other than ";"
# (no "%"), none of them a dot segment, and an optional trailing slash.
# Segments cannot overlap "/", so matching is linear.
_NORMAL = re.compile(rb"(?:/(?!\.\.?(?:/|\Z))[A-Za-z0-9\-._~!$&'()*+,=:@]+)*/?")


def normalize_path(raw: bytes) -> str:
    """
    Normalise a raw request path (without the query string).

    :param raw: the path as received, e.g. ``b"/a//b/../c%7e"``.
    :return: the canonical, ASCII, percent-encoded path, e.g. ``"/a/c~"``;
        this is what routes are matched against and what is sent upstream.
    :raises InvalidPath: if the path does not start with ``/`` or holds a
        malformed escape, NUL, a control character, space, backslash, ``#``,
        ``?``, ``;`` (a path parameter) or an ambiguous dot segment such as
        ``..%3B``.
    """
    if raw[:1] != b"/":
        raise InvalidPath("The request path must start with '/'.")
    if _NORMAL.fullmatch(raw) is not None:
        return raw.decode("ascii")
    return _normalize_slow(raw)


def _normalize_slow(raw: bytes) -> str:
    parts = raw.split(b"/")
    last = len(parts) - 1
    out: List[str] = []
    trailing = False
    for i in range(1, last + 1):
        segment = _segment(parts[i])
        if segment == "" or segment == ".":
            trailing = i == last
        elif segment == "..":
            if out:
                out.pop()
            trailing = i == last
        else:
            if segment[0] == "." and segment.split("%3B", 1)[0] in (".", ".."):
                raise InvalidPath("The request path holds an ambiguous dot segment.")
            out.append(segment)
            trailing = False
    if not out:
        return "/"
    return "/" + "/".join(out) + ("/" if trailing else "")


def _segment(seg: bytes) -> str:
    """One segment, without "/": escapes canonicalised, odd bytes encoded."""
    out: List[str] = []
    i = 0
    n = len(seg)
    while i < n:
        byte = seg[i]
        if byte == 0x25:  # "%"
            if i + 3 > n:
                raise InvalidPath("The request path holds a malformed percent-escape.")
            hi, lo = seg[i + 1], seg[i + 2]
            if hi not in _HEXDIGITS or lo not in _HEXDIGITS:
                raise InvalidPath("The request path holds a malformed percent-escape.")
            value = int(seg[i + 1 : i + 3], 16)
            if value == 0:
                raise InvalidPath("The request path holds a NUL character.")
            if value in _UNRESERVED:
                out.append(chr(value))
            else:
                out.append("%{:02X}".format(value))
            i += 3
        else:
            text = _RAW[byte]
            if text is None:
                raise InvalidPath(_why(byte))
            out.append(text)
            i += 1
    return "".join(out)


def _why(byte: int) -> str:
    if byte == 0:
        return "The request path holds a NUL character."
    if byte == 0x5C:
        return "The request path holds a backslash."
    if byte == 0x20:
        return "The request path holds a space."
    if byte < 0x20 or byte == 0x7F:
        return "The request path holds a control character."
    if byte == 0x3B:
        return "The request path holds a path parameter (';'), which the gateway does not accept."
    return "The request path holds a '{}' character.".format(chr(byte))
