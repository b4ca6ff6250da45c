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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """postgresql://... of a fresh database ``twistgate`` on a private server."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        unavailable("no initdb under /usr/lib/postgresql/*/bin")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        unavailable("running as root without runuser")
    base = tempfile.mkdtemp(prefix="twistgate-pg-")
    os.chmod(base, 0o755)
    data = os.path.join(base, "data")
    log = os.path.join(base, "server.log")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    port = _free_port()
    run = lambda args: subprocess.run(_as_postgres(args), check=True, capture_output=True, timeout=120)  # noqa: E731
    try:
        run([f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        run([f"{bin_dir}/pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start"])
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        detail = getattr(error, "stderr", b"") or b""
        shutil.rmtree(base, ignore_errors=True)
        unavailable(f"could not start a server: {error} {detail.decode(errors='replace')[-500:]}")
    try:
        import pg8000.dbapi

        admin = pg8000.dbapi.connect(host="127.0.0.1", port=port, user="postgres", database="postgres")
        admin.autocommit = True
        cursor = admin.cursor()
        cursor.execute("CREATE DATABASE twistgate")
        admin.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/twistgate"
    finally:
        subprocess.run(_as_postgres([f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


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
