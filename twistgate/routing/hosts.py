"""
The two sides of host matching, which must agree: a request's ``Host`` as
routes compare it (`normalize_host`, per request) and a route's ``host`` as
the table files it (`host_key`, once per route): lower-case, no trailing dot.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

__all__ = ["host_forms", "host_key", "normalize_host"]

_FORMS: "Dict[bytes, Tuple[Optional[str], str]]" = {}
_FORMS_MAX = 1024  # distinct Host values remembered (a client may send any number)


def host_forms(raw: bytes) -> "Tuple[Optional[str], str]":
    """
    A request's ``Host`` value as text (None when empty) and normalised
    (`normalize_host`, ``""`` when empty): remembered, since a gateway sees
    the same few Host values again and again.
    """
    forms = _FORMS.get(raw)
    if forms is None:
        text = raw.decode("latin-1") if raw else None
        forms = (text, normalize_host(text) or "")
        if len(_FORMS) >= _FORMS_MAX:
            _FORMS.clear()
        _FORMS[raw] = forms
    return forms


def normalize_host(value: Optional[str]) -> Optional[str]:
    """
    The host part of a ``Host`` header as routes compare it: lower-case,
    without port or a trailing dot; IPv6 literals keep their brackets.

    :param value: the header value (``"API.example.com:8443"``,
        ``"[::1]:8080"``) or None.
    :return: e.g. ``"api.example.com"``, ``"[::1]"``; None if empty.
    """
    if not value:
        return None
    host = value.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end != -1:
            host = host[: end + 1]
    else:
        colon = host.find(":")
        if colon != -1 and host.find(":", colon + 1) == -1:
            host = host[:colon]
    if host.endswith("."):
        host = host[:-1]
    return host or None


def host_key(host: Optional[str]) -> Tuple[Optional[str], Tuple[int, int]]:
    """
    A route's ``host`` as the table files it: (key, rank), where the key is
    None (any host), ".suffix" (a leading wildcard) or the exact host, in
    the form `normalize_host` gives a request's ``Host``.
    """
    if host is None or host.strip() == "*":
        return None, (2, 0)
    value = host.strip().lower()
    if value.endswith("."):
        value = value[:-1]
    rest = value[2:] if value.startswith("*.") else value
    if not rest or "*" in rest:
        raise ValueError("host: use an exact name or a leading wildcard label, as in *.example.com")
    if not rest.startswith("[") and ":" in rest:
        raise ValueError("host: must not include a port (IPv6 addresses go in brackets)")
    if value.startswith("*."):
        return value[1:], (1, -len(rest))
    return value, (0, 0)
