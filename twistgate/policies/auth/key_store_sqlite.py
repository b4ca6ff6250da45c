"""The embedded key store: one SQLite file, private to the gateway's user."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from twistgate.policies.auth.key_store import Dialect


class SQLite(Dialect):
    name = "sqlite"
    placeholder = "?"
    threads = 1  # SQLite serialises writers anyway; one thread avoids "database is locked"

    def __init__(self, path: str) -> None:
        self.path = path

    def connect(self) -> Any:
        if self.path != ":memory:" and not os.path.exists(self.path):
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            # Created readable by the gateway's user only: it holds key hashes.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        # A busy timeout lets `twistgate keys` write while the gateway reads.
        return sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)

    def prepare(self, connection: Any) -> None:
        if self.path != ":memory:":
            # Read and close the pragma's answer: PyPy's sqlite3 keeps an
            # unread statement open until garbage collection, and SQLite then
            # refuses to commit ("SQL statements in progress").
            cursor = connection.execute("PRAGMA journal_mode=WAL")
            cursor.fetchall()
            cursor.close()

    def is_disconnect(self, error: Exception) -> bool:
        return False
