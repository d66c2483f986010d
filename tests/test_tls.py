"""TLS as libpq defines it (``sslmode``, ``sslrootcert``, ``sslcert``/``sslkey``), against
real servers: one with ``ssl = on`` and a certificate chain made here (its own CA), one
without TLS. The embedded server is built without SSL; these use Debian's ``postgresql``
package (``make test`` installs it when it can), and skip, saying so, where there is none.

Whether a session used TLS is read from the server (``pg_stat_ssl``), not assumed.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import trustme
from dynamic_streams import (
    AsyncEventStore,
    EventStore,
    InvalidInputError,
    OperationalError,
    OperationTimeoutError,
    _native,
    build_event_filter,
)
from servers import Server, ssl_bin

pytestmark = pytest.mark.slow

EVERYTHING = build_event_filter().matching_any_event().finalize()
TABLE = "tls_events"
HBA = """
local all all trust
hostssl all certuser 127.0.0.1/32 cert
hostnossl all tlsonly 127.0.0.1/32 reject
hostssl all plainonly 127.0.0.1/32 reject
host all all 127.0.0.1/32 trust
"""


class Pki:
    def __init__(self, folder: Path) -> None:
        self.ca = trustme.CA()
        self.other_ca = trustme.CA()
        self.folder = folder
        self.ca_file = self._write("ca.crt", self.ca.cert_pem.bytes())
        self.other_ca_file = self._write("other-ca.crt", self.other_ca.cert_pem.bytes())
        # Issued for the name only: connecting by address is a wrong host name.
        self.server = self.ca.issue_cert("localhost")
        self.client_cert, self.client_key = self._leaf(self.ca, "certuser")
        self.foreign_cert, self.foreign_key = self._leaf(self.other_ca, "certuser")

    def _write(self, name: str, data: bytes) -> str:
        path = self.folder / name
        path.write_bytes(data)
        return str(path)

    def _leaf(self, ca: trustme.CA, user: str) -> tuple[str, str]:
        leaf = ca.issue_cert(f"{user}.example", common_name=user)
        tag = uuid.uuid4().hex[:8]
        cert = self._write(f"{user}-{tag}.crt", b"".join(b.bytes() for b in leaf.cert_chain_pems))
        key = self._write(f"{user}-{tag}.key", leaf.private_key_pem.bytes())
        return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def _server(*, tls: bool, pki: Pki) -> Iterator[Server]:
    bin_dir = ssl_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server built with SSL here (Debian: apt-get install postgresql)")
    server = Server(bin_dir)
    try:
        settings: dict[str, object] = {"ssl": "off"}
        if tls:
            server.write("server.crt", b"".join(b.bytes() for b in pki.server.cert_chain_pems))
            server.write("server.key", pki.server.private_key_pem.bytes())
            server.write("root.crt", pki.ca.cert_pem.bytes())
            server.write("pg_hba.conf", HBA)
            settings = {"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key",
                        "ssl_ca_file": "root.crt"}  # fmt: skip
        server.start(**settings)
        with psycopg.connect(server.local_dsn, autocommit=True) as conn:
            for role in ("certuser", "tlsonly", "plainonly"):
                conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
        with EventStore(f"{server.local_dsn}", table=TABLE) as store:
            store.create_schema()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[Server]:
    yield from _server(tls=True, pki=pki)


@pytest.fixture(scope="module")
def plain_server(pki: Pki) -> Iterator[Server]:
    yield from _server(tls=False, pki=pki)


@pytest.fixture(autouse=True)
def no_home_certificates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A HOME without ~/.postgresql: libpq's default files are each test's own choice."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def dsn(server: Server, form: str = "url", *, host: str = "localhost", user: str = "postgres", **options: str) -> tuple[str, str]:  # fmt: skip
    """A DSN for `server` in `form` ('url' or 'kv'), and the application name that marks
    its sessions."""
    app = f"tls-{uuid.uuid4().hex[:10]}"
    options = {"application_name": app, **options}
    if form == "url":
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in options.items())
        return f"postgresql://{user}@{host}:{server.port}/postgres?{query}", app
    pairs = " ".join(f"{k}='{v}'" for k, v in options.items())
    return f"host={host} port={server.port} user={user} dbname=postgres {pairs}", app


def used_tls(server: Server, app: str) -> bool:
    """Whether the (idle, pooled) session marked `app` is encrypted, as the server sees it."""
    with psycopg.connect(server.local_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
            "WHERE a.application_name = %s",
            (app,),
        ).fetchall()
    assert len(rows) == 1, rows
    return bool(rows[0][0])


def session(server: Server, form: str = "url", **kw: str) -> bool:
    """Opens a store with `kw`'s DSN, runs a read, and says whether it used TLS."""
    url, app = dsn(server, form, **kw)
    with EventStore(url, table=TABLE) as store:
        assert store.query(EVERYTHING).events == []
        return used_tls(server, app)


@pytest.mark.parametrize("form", ["url", "kv"])
@pytest.mark.parametrize(
    ("mode", "encrypted"),
    [("disable", False), ("allow", False), ("prefer", True), ("require", True),
     ("verify-ca", True), ("verify-full", True)],
)  # fmt: skip
def test_each_sslmode_against_a_server_that_offers_tls(
    tls_server: Server, pki: Pki, form: str, mode: str, encrypted: bool
) -> None:
    roots = {"sslrootcert": pki.ca_file} if mode.startswith("verify") else {}
    assert session(tls_server, form, sslmode=mode, **roots) is encrypted


def test_prefer_is_the_default(tls_server: Server) -> None:
    assert session(tls_server) is True


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_weak_modes_connect_plainly_to_a_server_without_tls(
    plain_server: Server, mode: str
) -> None:
    assert session(plain_server, sslmode=mode) is False


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_strong_modes_refuse_a_server_without_tls(
    plain_server: Server, pki: Pki, mode: str
) -> None:
    with pytest.raises(OperationalError, match="server does not support TLS") as caught:
        session(plain_server, sslmode=mode, sslrootcert=pki.ca_file)
    assert f"127.0.0.1:{plain_server.port}" in str(caught.value) or "localhost" in str(caught.value)


def test_allow_uses_tls_when_the_server_refuses_a_plain_session(tls_server: Server) -> None:
    assert session(tls_server, user="tlsonly", sslmode="allow") is True
    with pytest.raises(OperationalError) as caught:
        session(tls_server, user="tlsonly", sslmode="disable")
    assert caught.value.sqlstate == "28000"


def test_prefer_goes_plain_when_the_server_refuses_a_tls_session(tls_server: Server) -> None:
    assert session(tls_server, user="plainonly", sslmode="prefer") is False
    with pytest.raises(OperationalError) as caught:
        session(tls_server, user="plainonly", sslmode="require")
    assert caught.value.sqlstate == "28000"


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_a_certificate_from_another_ca_is_refused(tls_server: Server, pki: Pki, mode: str) -> None:
    # libpq: with a root certificate given, require checks the chain as verify-ca does.
    with pytest.raises(OperationalError, match="UnknownIssuer"):
        session(tls_server, sslmode=mode, sslrootcert=pki.other_ca_file)


def test_require_without_roots_encrypts_without_checking(tls_server: Server) -> None:
    assert session(tls_server, sslmode="require") is True


def test_verify_full_checks_the_host_name_and_verify_ca_does_not(
    tls_server: Server, pki: Pki
) -> None:
    with pytest.raises(OperationalError, match="not valid for name"):
        session(tls_server, host="127.0.0.1", sslmode="verify-full", sslrootcert=pki.ca_file)
    assert session(tls_server, host="127.0.0.1", sslmode="verify-ca", sslrootcert=pki.ca_file)


def test_a_client_certificate_logs_in_where_pg_hba_demands_one(
    tls_server: Server, pki: Pki
) -> None:
    identity = {"sslcert": pki.client_cert, "sslkey": pki.client_key}
    for form in ("url", "kv"):
        assert session(tls_server, form, user="certuser", sslmode="verify-full", sslrootcert=pki.ca_file, **identity)  # fmt: skip
    with pytest.raises(OperationalError) as caught:
        session(tls_server, user="certuser", sslmode="verify-full", sslrootcert=pki.ca_file)
    assert caught.value.sqlstate == "28000"
    # A certificate the server's CA did not sign: the server ends the handshake.
    with pytest.raises(OperationalError):
        session(tls_server, user="certuser", sslmode="verify-full", sslrootcert=pki.ca_file,
                sslcert=pki.foreign_cert, sslkey=pki.foreign_key)  # fmt: skip


def test_the_files_in_home_postgresql_are_the_defaults(
    tls_server: Server, pki: Pki, no_home_certificates: Path
) -> None:
    folder = no_home_certificates / ".postgresql"
    folder.mkdir()
    shutil.copy(pki.ca_file, folder / "root.crt")
    shutil.copy(pki.client_cert, folder / "postgresql.crt")
    shutil.copy(pki.client_key, folder / "postgresql.key")
    assert session(tls_server, user="certuser", sslmode="verify-full") is True


def test_configurations_that_cannot_work_are_refused_up_front(tls_server: Server, pki: Pki, tmp_path: Path) -> None:  # fmt: skip
    cases = [
        ({"sslmode": "verify-full"}, "sslrootcert"),
        ({"sslmode": "verify-ca"}, "sslrootcert"),
        ({"sslmode": "require", "sslrootcert": "system"}, "verify-full"),
        ({"sslmode": "verify-full", "sslrootcert": str(tmp_path / "missing.crt")}, "missing.crt"),
        ({"sslmode": "verify-full", "sslrootcert": pki.client_key}, "no PEM certificate"),
        ({"sslmode": "strict"}, "sslmode"),
        ({"sslcert": pki.client_cert, "sslkey": str(tmp_path / "none.key")}, "sslkey"),
    ]
    for options, named in cases:
        for form in ("url", "kv"):
            url, _ = dsn(tls_server, form, **options)
            with pytest.raises(InvalidInputError, match=named):
                EventStore(url, table=TABLE)


def test_system_roots_do_not_trust_a_private_ca(tls_server: Server) -> None:
    try:
        session(tls_server, sslrootcert="system")
    except InvalidInputError as err:  # a machine without any trusted roots installed
        assert "no trusted root certificates" in str(err)
    except OperationalError as err:
        assert "UnknownIssuer" in str(err)
    else:
        raise AssertionError("a server signed by a private CA was trusted by the system roots")


def test_unix_sockets_never_use_tls(tls_server: Server) -> None:
    url = f"{tls_server.local_dsn} sslmode=require application_name=unix-tls"
    with EventStore(url, table=TABLE) as store:
        store.query(EVERYTHING)
        assert used_tls(tls_server, "unix-tls") is False


def test_the_replica_and_the_asyncio_store_use_tls_too(tls_server: Server, pki: Pki) -> None:
    verified = {"sslmode": "verify-full", "sslrootcert": pki.ca_file}
    primary, _ = dsn(tls_server, **verified)
    replica, replica_app = dsn(tls_server, "kv", **verified)
    with EventStore(primary, table=TABLE, replica_dsn=replica) as store:
        assert store.query(EVERYTHING, consistency="eventual").from_replica
        assert used_tls(tls_server, replica_app)

    url, app = dsn(tls_server, **verified)

    async def read() -> bool:
        async with AsyncEventStore(url, table=TABLE) as store:
            await store.query(EVERYTHING)
            return used_tls(tls_server, app)

    assert asyncio.run(read()) is True


def test_a_timed_out_call_is_cancelled_on_the_server_over_tls(tls_server: Server, pki: Pki) -> None:
    url, app = dsn(tls_server, sslmode="verify-full", sslrootcert=pki.ca_file)
    with psycopg.connect(tls_server.local_dsn) as blocker:
        blocker.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        with EventStore(url, table=TABLE) as store:
            with pytest.raises(OperationTimeoutError):
                store.query(EVERYTHING, timeout=0.3)
            # The blocked statement is gone from the server while the lock is still held:
            # the cancel request reached it (over TLS, as the server demands of this role).
            with psycopg.connect(tls_server.local_dsn, autocommit=True) as watcher:
                for _ in range(100):
                    (waiting,) = watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                        "AND state = 'active'",
                        (app,),
                    ).fetchone()  # type: ignore[misc]
                    if waiting == 0:
                        break
                    watcher.execute("SELECT pg_sleep(0.02)")
                assert waiting == 0


def test_the_native_module_needs_no_system_openssl() -> None:
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("no ldd on this machine")
    linked = subprocess.run([ldd, _native.__file__], capture_output=True, text=True).stdout
    assert "libssl" not in linked and "libcrypto" not in linked, linked
