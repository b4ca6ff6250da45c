"""
API keys: their format, their hash and the record a store keeps.

A key is ``tg_<id>_<secret>``: the 16-hex-digit id is public (it names the
key in lists, logs and revocations), the secret is 256 random bits.  Stores
keep only the SHA-256 of the whole key: a high-entropy key needs no slow
hash, and a leaked table gives no usable key.  Hashes are compared with
`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timezone
from typing import Any, Dict, Optional, Tuple

import attrs

PREFIX = "tg_"
_ID = re.compile(r"[0-9a-f]{16}\Z")
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}\Z")
MAX_KEY_LENGTH = 128


@attrs.frozen(kw_only=True)
class KeyRecord:
    """One stored key.  ``key_hash`` never leaves the gateway."""

    id: str
    authenticator: str
    consumer: str
    key_hash: str = attrs.field(repr=False)
    created_at: float
    expires_at: Optional[float] = None
    revoked_at: Optional[float] = None

    def usable_at(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def public(self, now: Optional[float] = None) -> Dict[str, Any]:
        """What the admin API and the CLI show: everything but the hash."""
        shown: Dict[str, Any] = {
            "id": self.id,
            "authenticator": self.authenticator,
            "consumer": self.consumer,
            "created_at": timestamp(self.created_at),
            "expires_at": timestamp(self.expires_at),
            "revoked_at": timestamp(self.revoked_at),
        }
        if now is not None:
            shown["active"] = self.usable_at(now)
        return shown


def timestamp(seconds: Optional[float]) -> Optional[str]:
    """RFC 3339 UTC, to the second."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def same_hash(expected: str, key: str) -> bool:
    """Constant-time comparison of a stored hash with a presented key's."""
    return hmac.compare_digest(expected.encode("ascii"), hash_key(key).encode("ascii"))


def parse_key(key: str) -> Optional[str]:
    """The id of a well-formed key, or None (nothing is looked up for junk)."""
    if len(key) > MAX_KEY_LENGTH or not key.startswith(PREFIX):
        return None
    key_id, sep, secret = key[len(PREFIX) :].partition("_")
    if not sep or not _ID.match(key_id) or not _SECRET.match(secret):
        return None
    return key_id


def new_key(
    authenticator: str, consumer: str, now: float, expires_in: Optional[float] = None
) -> Tuple[KeyRecord, str]:
    """A fresh key: the record to store, and the key itself (shown once, never stored)."""
    key_id = secrets.token_hex(8)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    record = KeyRecord(
        id=key_id,
        authenticator=authenticator,
        consumer=consumer,
        key_hash=hash_key(key),
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
    )
    return record, key


def valid_consumer(consumer: Any) -> Optional[str]:
    """Why a consumer name is refused, or None when it is fine."""
    if not isinstance(consumer, str) or not consumer.strip():
        return "'consumer' must be a non-empty string"
    if len(consumer) > 200:
        return "'consumer' must be at most 200 characters"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in consumer):
        return "'consumer' must not contain control characters"
    return None
