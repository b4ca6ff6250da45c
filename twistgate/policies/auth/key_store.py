"""
Where API keys live: one SQL table, in SQLite (the default, embedded) or
PostgreSQL (shared by several gateways), behind the same interface.

DB-API drivers block, so the gateway runs every statement in a small thread
pool of its own (`ThreadRunner`) and gets a Deferred back: the reactor never
waits on the database.  Without a threaded reactor (unit tests on a `Clock`,
the `twistgate keys` command) the same statements run inline.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional, Sequence

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from twistgate.policies.auth.keys import KeyRecord

TABLE = "twistgate_api_keys"
_COLUMNS = "id, authenticator, consumer, key_hash, created_at, expires_at, revoked_at"
SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " id VARCHAR(32) PRIMARY KEY,"
    " authenticator VARCHAR(200) NOT NULL,"
    " consumer VARCHAR(200) NOT NULL,"
    " key_hash CHAR(64) NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL,"
    " expires_at DOUBLE PRECISION,"
    " revoked_at DOUBLE PRECISION)"
)


class Dialect:
    """What differs between drivers: how to connect, placeholders, errors."""

    name = "sql"
    placeholder = "?"
    threads = 1

    def connect(self) -> Any:
        raise NotImplementedError

    def prepare(self, connection: Any) -> None:
        """Per-connection setup (pragmas)."""

    def is_disconnect(self, error: Exception) -> bool:
        return False

    def sql(self, statement: str) -> str:
        return statement if self.placeholder == "?" else statement.replace("?", self.placeholder)


class Database:
    """
    A DB-API connection per thread, opened on first use and reopened after
    the server dropped it.  Each call is one transaction.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: List[Any] = []
        self._schema_ready = False

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self.dialect.connect()
            self.dialect.prepare(connection)
            self._local.connection = connection
            with self._lock:
                self._open.append(connection)
        return connection

    def _drop(self, connection: Any) -> None:
        self._local.connection = None
        with self._lock:
            if connection in self._open:
                self._open.remove(connection)
        try:
            connection.close()
        except Exception:
            pass

    def run(self, interaction: Callable[..., Any], *args: Any) -> Any:
        connection = self._connection()
        try:
            cursor = connection.cursor()
            try:
                if not self._schema_ready:
                    cursor.execute(SCHEMA)
                    self._schema_ready = True
                result = interaction(self.dialect, cursor, *args)
            finally:
                cursor.close()
            connection.commit()
            return result
        except Exception as error:
            try:
                connection.rollback()
            except Exception:
                pass
            if self.dialect.is_disconnect(error):
                self._drop(connection)
            raise

    def close(self) -> None:
        with self._lock:
            connections, self._open = self._open, []
        for connection in connections:
            try:
                connection.close()
            except Exception:
                pass


# -- statements (run in a thread) -----------------------------------------


def _record(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(
        id=row[0],
        authenticator=row[1],
        consumer=row[2],
        key_hash=row[3].strip(),
        created_at=float(row[4]),
        expires_at=float(row[5]) if row[5] is not None else None,
        revoked_at=float(row[6]) if row[6] is not None else None,
    )


def insert(dialect: Dialect, cursor: Any, record: KeyRecord) -> None:
    cursor.execute(
        dialect.sql(f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
        (record.id, record.authenticator, record.consumer, record.key_hash,
         record.created_at, record.expires_at, record.revoked_at),
    )


def select(dialect: Dialect, cursor: Any, authenticator: str, key_id: str) -> Optional[KeyRecord]:
    cursor.execute(dialect.sql(f"SELECT {_COLUMNS} FROM {TABLE} WHERE id = ? AND authenticator = ?"), (key_id, authenticator))
    row = cursor.fetchone()
    return _record(row) if row is not None else None


def select_all(dialect: Dialect, cursor: Any, authenticator: str) -> List[KeyRecord]:
    cursor.execute(
        dialect.sql(f"SELECT {_COLUMNS} FROM {TABLE} WHERE authenticator = ? ORDER BY created_at, id"), (authenticator,)
    )
    return [_record(row) for row in cursor.fetchall()]


def revoke(dialect: Dialect, cursor: Any, authenticator: str, key_id: str, at: float) -> bool:
    """Mark the key revoked; False when there is no such key.  Revoking twice keeps the first time."""
    cursor.execute(
        dialect.sql(f"UPDATE {TABLE} SET revoked_at = ? WHERE id = ? AND authenticator = ? AND revoked_at IS NULL"),
        (at, key_id, authenticator),
    )
    if cursor.rowcount:
        return True
    return select(dialect, cursor, authenticator, key_id) is not None


# -- the two faces of a store ----------------------------------------------


class InlineRunner:
    """Runs a call at once (no threads): tests on a Clock, the CLI."""

    threaded = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def run(self, f: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        return maybeDeferred(f, *args)


class ThreadRunner:
    """Runs blocking calls in a thread pool owned by the gateway, not the reactor's."""

    threaded = True

    def __init__(self, reactor: Any, threads: int, name: str) -> None:
        self.reactor = reactor
        self.pool = ThreadPool(minthreads=0, maxthreads=threads, name=name)

    def start(self) -> None:
        if not self.pool.started:
            self.pool.start()

    def stop(self) -> None:
        if self.pool.started:
            self.pool.stop()

    def run(self, f: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        return deferToThreadPool(self.reactor, self.pool, f, *args)


def runner_for(reactor: Any, threads: int, name: str) -> Any:
    """Threads when the reactor has them; inline otherwise."""
    if IReactorThreads.providedBy(reactor) and hasattr(reactor, "callFromThread"):
        return ThreadRunner(reactor, threads, name)
    return InlineRunner()


class KeyStore:
    """The asynchronous store the gateway uses: every call returns a Deferred."""

    def __init__(self, database: Database, runner: Any, clock: Any, timeout: float) -> None:
        self.database = database
        self.runner = runner
        self.clock = clock
        self.timeout = timeout
        self.stopped = False

    def _call(self, statement: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        if self.stopped:
            return fail(RuntimeError("the key store is closed"))
        self.runner.start()  # idempotent: a gateway that skipped start() still works
        d = self.runner.run(self.database.run, statement, *args)
        if self.runner.threaded:
            d.addTimeout(self.timeout, self.clock)
        return d

    def start(self) -> None:
        self.runner.start()

    def stop(self) -> None:
        self.stopped = True
        self.runner.stop()
        self.database.close()

    def get(self, authenticator: str, key_id: str) -> "Deferred[Optional[KeyRecord]]":
        return self._call(select, authenticator, key_id)

    def create(self, record: KeyRecord) -> "Deferred[None]":
        return self._call(insert, record)

    def list(self, authenticator: str) -> "Deferred[List[KeyRecord]]":
        return self._call(select_all, authenticator)

    def revoke(self, authenticator: str, key_id: str, at: float) -> "Deferred[bool]":
        return self._call(revoke, authenticator, key_id, at)


class BlockingKeyStore:
    """The same store for offline tools (`twistgate keys`): plain calls, no reactor."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def get(self, authenticator: str, key_id: str) -> Optional[KeyRecord]:
        return self.database.run(select, authenticator, key_id)  # type: ignore[no-any-return]

    def create(self, record: KeyRecord) -> None:
        self.database.run(insert, record)

    def list(self, authenticator: str) -> List[KeyRecord]:
        return self.database.run(select_all, authenticator)  # type: ignore[no-any-return]

    def revoke(self, authenticator: str, key_id: str, at: float) -> bool:
        return bool(self.database.run(revoke, authenticator, key_id, at))

    def close(self) -> None:
        self.database.close()


def dialect_for(url: str) -> Dialect:
    """The dialect of a ``store:`` value (already validated by the config parser)."""
    if url.startswith("sqlite:"):
        from twistgate.policies.auth.key_store_sqlite import SQLite

        return SQLite(url[len("sqlite:") :])
    from twistgate.policies.auth.key_store_postgres import PostgreSQL

    return PostgreSQL(url)
