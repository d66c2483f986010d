"""The ``dynamic-streams`` command line, end to end: each command a subprocess against the test
server, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from dynamic_streams import Event, EventStore, build_event_filter

COMMANDS = ["create-schema", "migrate", "head", "tail", "export", "import", "embedded"]


def cli(*args: str, dsn: str | None = None, input: str | None = None, **kw: Any) -> Any:
    env = {k: v for k, v in os.environ.items() if k != "DYNAMIC_STREAMS_DSN"}
    if dsn is not None:
        env["DYNAMIC_STREAMS_DSN"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "dynamic_streams", *args],
        capture_output=True, text=True, env=env, input=input, timeout=120, **kw,
    )  # fmt: skip


def reap(process: subprocess.Popen[str]) -> None:
    """Ends `process` (if a test left it running), waits for it and closes its pipes."""
    with process:
        process.kill()


def history(n: int) -> list[Event]:
    return [
        Event(
            "BookCopyLentToReader" if i % 2 else "BookCopyReturnedByReader",
            {"BookID": f"b{i % 100}", "ReaderID": f"r{i % 7}", "n": i, "exact": "0.1"},
            metadata={"MessageID": f"m{i}"},
            id=uuid.uuid4(),
            tags=[f"book:b{i % 100}"] + ([f"reader:r{i % 7}"] if i % 2 else []),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command: str | None) -> None:
    done = cli(*([command] if command else []), "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: dynamic-streams" in done.stdout
    if command is None:
        assert all(c in done.stdout for c in COMMANDS if c != "migrate")


def test_the_console_script_is_installed() -> None:
    script = Path(sysconfig.get_path("scripts")) / "dynamic-streams"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "create-schema" in done.stdout


def test_usage_errors_exit_2_and_store_errors_exit_1(event_store_dsn: str) -> None:
    no_dsn = cli("head")
    assert (no_dsn.returncode, no_dsn.stderr) == (
        2,
        "dynamic-streams: no DSN: pass --dsn or set DYNAMIC_STREAMS_DSN\n",
    )
    assert cli("tail", "--where", "no-equals-sign", dsn=event_store_dsn).returncode == 2
    assert cli("frobnicate").returncode == 2
    secret = "postgresql://reader:s3cret-pw@127.0.0.1:1/db?connect_timeout=2"
    refused = cli("--dsn", secret, "head")
    assert refused.returncode == 1
    assert (
        refused.stderr.startswith("dynamic-streams: head: ") and "s3cret-pw" not in refused.stderr
    )
    missing = cli("--table", "no_such_table", "head", dsn=event_store_dsn)
    assert missing.returncode == 1 and "no_such_table" in missing.stderr


def test_schema_head_and_tail(event_store_dsn: str) -> None:
    table = f"cli_{uuid.uuid4().hex[:12]}"
    created = cli("--table", table, "create-schema", dsn=event_store_dsn)
    assert (created.returncode, created.stdout) == (0, f"{table}: schema current\n")
    assert cli("--table", table, "migrate", dsn=event_store_dsn).returncode == 0
    assert cli("--table", table, "head", dsn=event_store_dsn).stdout == "0\n"
    with EventStore(event_store_dsn, table=table) as store:
        store.append_unconditionally(*history(30))
        tail = cli("--table", table, "tail", "-n", "3", dsn=event_store_dsn)
        assert [json.loads(line)["sequence_number"] for line in tail.stdout.splitlines()] == [
            28,
            29,
            30,
        ]
        filtered = cli(
            "--table", table, "tail", "-n", "100", "--type", "BookCopyLentToReader",
            "--where", "ReaderID=r3", "--where", "n:=17", "--tag", "book:b17",
            dsn=event_store_dsn,
        )  # fmt: skip
        [line] = filtered.stdout.splitlines()
        event = json.loads(line)
        assert (event["sequence_number"], event["payload"]["n"], event["tags"]) == (
            18,
            17,
            ["book:b17", "reader:r3"],
        )
        assert (
            cli("--table", table, "tail", "--after", "28", dsn=event_store_dsn).stdout.count("\n")
            == 2
        )
        store._native.drop_table()


def test_an_export_of_100000_events_imports_as_it_was(
    event_store: EventStore, event_store_dsn: str, event_store_table: str, tmp_path: Path
) -> None:
    events = history(100_000)
    event_store.import_events(events)
    exported = tmp_path / "events.ndjson"
    done = cli("--table", event_store_table, "export", str(exported), dsn=event_store_dsn)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("exported 100,000 events in ")
    copy = f"copy_{uuid.uuid4().hex[:12]}"
    cli("--table", copy, "create-schema", dsn=event_store_dsn)
    loaded = cli(
        "--table", copy, "import", str(exported), "--batch-size", "7000", dsn=event_store_dsn
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stderr.startswith("imported 100,000 events in ")
    with EventStore(event_store_dsn, table=copy) as imported:
        try:
            originals, copies = list(event_store.read()), list(imported.read())
            assert len(copies) == 100_000
            assert [e._replace(sequence_number=0) for e in copies] == [
                e._replace(sequence_number=0) for e in originals
            ]
            # Found through the key index like any event.
            lent_b7 = build_event_filter().matching().all_tags_of("book:b7", "reader:r0").finalize()
            assert len(imported.query(lent_b7)) == len(event_store.query(lent_b7)) > 0
            # A rerun adds only the events without ids.
            again = cli("--table", copy, "import", str(exported), dsn=event_store_dsn)
            assert again.returncode == 0, again.stderr
            assert imported.head() == 100_000 + sum(1 for e in events if e.id is None)
        finally:
            imported._native.drop_table()


def test_a_bad_line_names_its_number(event_store_dsn: str, event_store_table: str) -> None:
    lines = '{"event_type": "A", "payload": {}}\n\n{"event_type": "B"}\n'
    done = cli("--table", event_store_table, "import", input=lines, dsn=event_store_dsn)
    assert (done.returncode, done.stderr) == (1, "dynamic-streams: import: line 3: no 'payload'\n")
    not_object = cli(
        "--table",
        event_store_table,
        "import",
        input='{"event_type": "A", "payload": [1]}\n',
        dsn=event_store_dsn,
    )
    assert (
        not_object.returncode == 1
        and "line 1: the payload must be a JSON object" in not_object.stderr
    )


def test_tail_follows_live_appends_until_interrupted(
    event_store: EventStore, event_store_dsn: str, event_store_table: str
) -> None:
    def b42(n: int) -> Event:
        return Event("BookCopyLentToReader", {"BookID": "b42", "n": n})

    event_store.append_unconditionally(b42(0), *history(5), b42(1))
    env = {**os.environ, "DYNAMIC_STREAMS_DSN": event_store_dsn}
    follow = subprocess.Popen(
        [sys.executable, "-m", "dynamic_streams", "--table", event_store_table, "tail", "-n", "1",
         "--follow", "--where", "BookID=b42"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines: list[dict[str, Any]] = []

    def arrived(n: int) -> bool:
        deadline = time.monotonic() + 30
        while len(lines) < n and time.monotonic() < deadline and follow.poll() is None:
            time.sleep(0.02)
        return len(lines) >= n

    try:
        stdout = follow.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: lines.extend(json.loads(x) for x in stdout))
        reader.start()
        # The newest match first: the command has read the head it follows from.
        assert arrived(1), follow.stderr.read() if follow.stderr else ""
        for n in range(2, 5):
            event_store.append_unconditionally(
                b42(n), Event("BookCopyLentToReader", {"BookID": "b1"})
            )
        assert arrived(4)
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=10) == 130
        reader.join(10)
        assert [e["payload"]["n"] for e in lines] == [1, 2, 3, 4]
        assert [e["sequence_number"] for e in lines] == [7, 8, 10, 12]
    finally:
        reap(follow)


def test_embedded_prints_a_dsn_that_works() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "dynamic_streams", "embedded"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        dsn = server.stdout.readline().strip()
        assert dsn.startswith("postgresql://"), server.stderr.read() if server.stderr else ""
        assert cli("create-schema", dsn=dsn).returncode == 0
        assert cli("head", dsn=dsn).stdout == "0\n"
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 130
        # Stopped with it: the DSN no longer answers.
        assert cli("head", dsn=dsn).returncode == 1
    finally:
        reap(server)
