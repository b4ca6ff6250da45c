"""
The ``basic`` authenticator: HTTP Basic (RFC 7617) against an htpasswd file
of bcrypt entries.

bcrypt is slow on purpose (tens to hundreds of milliseconds), so checks run
in a small thread pool, never on the reactor, with a bound on how many may
wait (beyond it: 503, not an ever-growing queue).  A recent success is
remembered for ``cache_ttl`` under an HMAC of user, password and stored hash
with a per-process random key: the password itself is never kept.  Unknown
users are checked against a dummy hash so that timing does not tell them
apart from wrong passwords.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

import bcrypt

from twistgate.policies.auth.base import BackendUnavailable, Identity, InvalidCredentials, challenge, first_header, header_value
from twistgate.policies.auth.config import BasicConfig

_BCRYPT = re.compile(rb"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}\Z")
MAX_PENDING = 64
CACHE_SIZE = 1024
BCRYPT_MAX_BYTES = 72  # bcrypt reads no further; htpasswd truncates the same way


class HtpasswdError(ValueError):
    """A line of the htpasswd file that cannot be used."""


def parse_htpasswd(data: bytes) -> Dict[str, bytes]:
    """``user:hash`` lines; blank lines and ``#`` comments skipped; bcrypt only."""
    users: Dict[str, bytes] = {}
    for number, line in enumerate(data.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        user, sep, hashed = line.partition(b":")
        if not sep or not user:
            raise HtpasswdError(f"line {number}: expected user:hash")
        if not _BCRYPT.match(hashed):
            raise HtpasswdError(
                f"line {number}: only bcrypt entries ($2y$/$2b$, from `htpasswd -B`) are accepted;"
                " MD5, SHA-1, crypt and plain text are too weak"
            )
        try:
            name = user.decode("utf-8")
        except UnicodeDecodeError:
            raise HtpasswdError(f"line {number}: the user name is not UTF-8") from None
        if name in users:
            raise HtpasswdError(f"line {number}: user {name!r} appears twice")
        users[name] = hashed
    return users


def dummy_hash(users: Dict[str, bytes]) -> bytes:
    """A hash of a random password at the users' cost: unknown users take as long as known ones."""
    cost = int(_BCRYPT.match(next(iter(users.values()))).group(1)) if users else 4  # type: ignore[union-attr]
    return bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(rounds=max(4, min(cost, 31))))


def _check(password: bytes, hashed: bytes) -> bool:
    return bcrypt.checkpw(password[:BCRYPT_MAX_BYTES], hashed)


class BasicAuthenticator:
    kind = "basic"
    reads_forwarding = False  # its own credential only (`twistgate.policies.auth.policy`'s sight)

    def __init__(
        self, config: BasicConfig, users: Dict[str, bytes], clock: Any, runner: Any, dummy: Optional[bytes] = None
    ) -> None:
        self.config = config
        self.name = config.name
        self.users = users
        self.clock = clock
        self.runner = runner
        self.pending = 0
        self._dummy = dummy if dummy is not None else dummy_hash(users)
        self._cache_key = os.urandom(32)
        self._recent: "OrderedDict[bytes, float]" = OrderedDict()
        self._challenge = challenge("Basic", realm=config.realm, charset="UTF-8")

    def credentials(self, request: Any) -> Optional[bytes]:
        value = first_header(request, b"Authorization")
        if value is None:
            return None
        scheme, _, encoded = value.partition(b" ")
        if scheme.lower() != b"basic":
            return None
        return encoded.strip()

    def verify(self, request: Any, encoded: bytes) -> Any:
        user, password = _decode(encoded)
        stored = self.users.get(user)
        hashed = stored if stored is not None else self._dummy
        fingerprint = hmac.new(self._cache_key, b"\0".join([user.encode("utf-8"), password, hashed]), hashlib.sha256).digest()
        if stored is not None and self._remembered(fingerprint):
            return self._identity(user)
        if self.pending >= MAX_PENDING:
            raise BackendUnavailable("too many password checks in progress")
        self.pending += 1
        d = self.runner.run(_check, password, hashed)

        def checked(ok: bool) -> Identity:
            self.pending -= 1
            if not ok or stored is None:
                raise InvalidCredentials("wrong user or password")
            self._remember(fingerprint)
            return self._identity(user)

        def failed(failure: Any) -> Any:
            self.pending -= 1
            if failure.check(InvalidCredentials):
                return failure
            raise BackendUnavailable("the password check failed")

        return d.addCallbacks(checked, failed)

    def strip(self, request: Any) -> None:
        value = first_header(request, b"Authorization")
        if value is not None and value[:6].lower() == b"basic ":
            request.headers.removeHeader(b"Authorization")

    def challenge(self, error: Optional[InvalidCredentials]) -> bytes:
        return self._challenge

    def _remembered(self, fingerprint: bytes) -> bool:
        expires = self._recent.get(fingerprint)
        if expires is None:
            return False
        if expires <= self.clock.seconds():
            del self._recent[fingerprint]
            return False
        return True

    def _remember(self, fingerprint: bytes) -> None:
        if self.config.cache_ttl <= 0:
            return
        self._recent[fingerprint] = self.clock.seconds() + self.config.cache_ttl
        self._recent.move_to_end(fingerprint)
        while len(self._recent) > CACHE_SIZE:
            self._recent.popitem(last=False)

    def _identity(self, user: str) -> Identity:
        headers: Tuple[Tuple[bytes, bytes], ...] = ()
        if self.config.forward_consumer:
            value = header_value(user)
            if value is not None:
                headers = ((self.config.forward_consumer.encode("ascii"), value),)
        return Identity(
            consumer=user,
            authenticator=self.name,
            kind=self.kind,
            details={"authenticator": self.name, "type": self.kind, "consumer": user},
            headers=headers,
        )


def _decode(encoded: bytes) -> Tuple[str, bytes]:
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCredentials("malformed Basic credentials") from None
    user, sep, password = decoded.partition(b":")
    if not sep:
        raise InvalidCredentials("malformed Basic credentials")
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        raise InvalidCredentials("malformed Basic credentials") from None
