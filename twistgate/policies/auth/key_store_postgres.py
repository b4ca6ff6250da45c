"""
The shared key store: PostgreSQL through pg8000, for several gateways.

pg8000 is pure Python, so the same driver runs on CPython and on PyPy
(psycopg2 builds on PyPy but does not import: its C extension needs
CPython's API).  The ``store:`` URL is the libpq form,
``postgresql://user:password@host:port/dbname?sslmode=require``; a ``host``
query parameter naming a directory connects through that UNIX socket.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Dict
from urllib.parse import parse_qs, unquote, urlsplit

from twistgate.policies.auth.key_store import Dialect

#: sslmode values that ask for TLS; "verify-*" also check the server's certificate.
_TLS_MODES = ("require", "verify-ca", "verify-full")


def connect_arguments(url: str, connect_timeout: int) -> Dict[str, Any]:
    """pg8000's ``connect()`` keyword arguments for a libpq-style URL."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    arguments: Dict[str, Any] = {
        "user": unquote(parts.username) if parts.username else os.environ.get("PGUSER", "postgres"),
        "database": unquote(parts.path.lstrip("/")) or None,
        "timeout": int(query.get("connect_timeout", connect_timeout)),
        "application_name": query.get("application_name", "twistgate"),
    }
    if parts.password is not None:
        arguments["password"] = unquote(parts.password)
    socket_dir = query.get("host")
    if socket_dir and socket_dir.startswith("/"):
        port = parts.port or 5432
        arguments["unix_sock"] = os.path.join(socket_dir, f".s.PGSQL.{port}")
    else:
        arguments["host"] = parts.hostname or "localhost"
        arguments["port"] = parts.port or 5432
    mode = query.get("sslmode", "disable")
    if mode in _TLS_MODES:
        context = ssl.create_default_context()
        if mode == "require":  # libpq's meaning: encrypted, the certificate not checked
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif mode == "verify-ca":
            context.check_hostname = False
        arguments["ssl_context"] = context
    return arguments


class PostgreSQL(Dialect):
    name = "postgresql"
    placeholder = "%s"
    threads = 4

    def __init__(self, url: str, connect_timeout: int = 5) -> None:
        self.url = url
        self.connect_timeout = connect_timeout

    def __repr__(self) -> str:
        return "<PostgreSQL key store>"  # the URL may hold a password

    def connect(self) -> Any:
        import pg8000.dbapi

        return pg8000.dbapi.connect(**connect_arguments(self.url, self.connect_timeout))

    def is_disconnect(self, error: Exception) -> bool:
        import pg8000.dbapi

        # InterfaceError: the socket failed or closed; OperationalError: the
        # server ended the session (a restart, an administrator).
        return isinstance(error, (pg8000.dbapi.InterfaceError, pg8000.dbapi.OperationalError))
