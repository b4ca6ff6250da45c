"""The shared key store: PostgreSQL through psycopg2, for several gateways."""

from __future__ import annotations

from typing import Any

from twistgate.policies.auth.key_store import Dialect


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
        import psycopg2

        return psycopg2.connect(self.url, connect_timeout=self.connect_timeout, application_name="twistgate")

    def is_disconnect(self, error: Exception) -> bool:
        import psycopg2

        return isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError))
