"""
A real PostgreSQL server for the key-store tests, started on a free port in a
temporary directory (initdb + pg_ctl from /usr/lib/postgresql/*/bin) and
stopped at the end.  PostgreSQL refuses to run as root: as root, the server
runs as the ``postgres`` user with a data directory it owns.

Without PostgreSQL the tests are skipped, except in CI (``CI`` set), where a
missing server is a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from typing import Iterator, List, Optional

import pytest


def _bin_dir() -> Optional[str]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(command: List[str]) -> List[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


class PostgresServer:
    """A private PostgreSQL server in a temporary directory: start, stop and start again on the same port."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            unavailable("no initdb under /usr/lib/postgresql/*/bin")
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            unavailable("running as root without runuser")
        self.bin_dir = str(bin_dir)
        self.base = tempfile.mkdtemp(prefix="twistgate-pg-")
        os.chmod(self.base, 0o755)
        self.data = os.path.join(self.base, "data")
        self.log = os.path.join(self.base, "server.log")
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/twistgate"
        try:
            self._run([f"{self.bin_dir}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            self.start()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
            detail = getattr(error, "stderr", b"") or b""
            shutil.rmtree(self.base, ignore_errors=True)
            unavailable(f"could not start a server: {error} {detail.decode(errors='replace')[-500:]}")
        import pg8000.dbapi

        admin = pg8000.dbapi.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
        admin.autocommit = True
        cursor = admin.cursor()
        cursor.execute("CREATE DATABASE twistgate")
        admin.close()

    def _run(self, args: List[str]) -> None:
        subprocess.run(_as_postgres(args), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run([f"{self.bin_dir}/pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60", "start"])

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([f"{self.bin_dir}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"]),
            capture_output=True, timeout=60,
        )

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """postgresql://... of a fresh database ``twistgate`` on a private server."""
    server = PostgresServer()
    try:
        yield server.url
    finally:
        server.close()


def clear_keys(url: str) -> None:
    """An empty key table (between tests sharing the session's server)."""
    import pg8000.dbapi

    from twistgate.policies.auth.key_store_postgres import connect_arguments

    connection = pg8000.dbapi.connect(**connect_arguments(url, 5))
    try:
        connection.cursor().execute("DROP TABLE IF EXISTS twistgate_api_keys")
        connection.commit()
    finally:
        connection.close()
