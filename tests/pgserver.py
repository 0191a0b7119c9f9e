"""A throwaway PostgreSQL server for the ledger's tests, from the Debian package's binaries:
$UNLEARNKIT_TEST_POSTGRES when set, else a server in a temporary folder on a free port (as the
postgres user when run as root), stopped when the tests end."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager


def binaries() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server():
    """Yields a URL of an empty database, or None when PostgreSQL is not installed."""
    if url := os.environ.get("UNLEARNKIT_TEST_POSTGRES"):
        yield url
        return
    folder = binaries()
    if folder is None:
        yield None
        return
    data = tempfile.mkdtemp(prefix="unlearnkit-pg.")
    as_root = os.getuid() == 0
    if as_root:
        shutil.chown(data, "postgres")

    def run(*command: str) -> None:
        full = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(command)] if as_root else list(command)
        subprocess.run(full, check=True, capture_output=True, text=True)

    port = free_port()
    run(f"{folder}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"'-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off'"
    run(f"{folder}/pg_ctl", "-D", data, "-o", options, "-l", f"{data}/server.log", "-w", "start")
    try:
        run(f"{folder}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "unlearnkit_test")
        yield f"postgresql://postgres@127.0.0.1:{port}/unlearnkit_test"
    finally:
        run(f"{folder}/pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)
