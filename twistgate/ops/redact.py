"""
The configuration as the admin API shows it: plain JSON values with every
secret replaced.

Secrets are recognised three ways: by key name (token, secret, password,
private_key, key, dsn, authorization...), by attrs fields declared
``repr=False`` (the config types' own mark for secrets), and by URLs
carrying credentials (``postgresql://user:pass@host`` keeps the user and
hides the password).  Redaction errs on the side of hiding.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Dict
from urllib.parse import urlsplit, urlunsplit

import attrs

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"(^|_|-)(token|secret|password|passwd|passphrase|private_key|key|api_key|apikey|dsn|credentials?|authorization|cookie|signature)$",
    re.IGNORECASE,
)
_URL_WITH_USERINFO = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s]*@")


def secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(name.replace(" ", "_")))


def redact_url(text: str) -> str:
    """``scheme://user:pass@host/...`` -> ``scheme://user:***@host/...``."""
    if not _URL_WITH_USERINFO.match(text):
        return text
    try:
        parts = urlsplit(text)
        user = parts.username or ""
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        userinfo = f"{user}:{REDACTED}" if parts.password is not None else REDACTED
        return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, parts.fragment))
    except ValueError:
        return REDACTED


def redacted(value: Any) -> Any:
    """`value` (config objects, mappings, sequences, scalars) as JSON-ready data, secrets hidden."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, bytes):
        return redact_url(value.decode("latin-1"))
    if isinstance(value, Enum):
        return redacted(value.value)
    if attrs.has(type(value)):
        out = {}
        for field in attrs.fields(type(value)):
            if field.name in ("location", "declared"):
                continue  # where it was written; a plugin's option schema object
            item = getattr(value, field.name)
            if item is not None and (field.repr is False or secret_key(field.name)) and not _harmless(item):
                out[field.name] = REDACTED
            else:
                out[field.name] = redacted(item)
        return out
    if isinstance(value, dict) or hasattr(value, "items"):
        return {
            str(k): (REDACTED if secret_key(str(k)) and v is not None and not _harmless(v) else redacted(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [redacted(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    return redact_url(str(value))


#: GatewayConfig fields the effective view leaves out: where the file is
#: (the answer says it beside), an unused legacy slot (the admin section is
#: in `sections`), and the sections mapping itself (shown at the top level).
_NOT_SHOWN = frozenset({"source", "admin", "sections"})


def effective_config(config: Any) -> Dict[str, Any]:
    """
    The configuration in force, as the file would write it: every top-level
    key, defaults filled in, the feature sections (``admin``, ``auth``,
    ``access_log``...) at the top level where the file has them, secrets
    redacted.  Keys without a value in this configuration are left out (an
    absent ``demo`` is not ``demo: null``).
    """
    out: Dict[str, Any] = {}
    for field in attrs.fields(type(config)):
        if field.name in _NOT_SHOWN:
            continue
        value = getattr(config, field.name)
        if value is not None:
            out[field.name] = redacted(value)
    for key, value in config.sections.items():
        if value is not None:
            out[key] = redacted(value)
    return out


def _harmless(value: Any) -> bool:
    """Values that are not secrets even under a secret-looking key (flags, empty)."""
    return isinstance(value, bool) or value == "" or value == () or value == {}
