"""The ``dynamic-streams`` command (also ``python -m dynamic_streams``).

    dynamic-streams embedded                      # a throwaway server; prints its DSN
    dynamic-streams --dsn "$DSN" create-schema    # or: migrate
    dynamic-streams head
    dynamic-streams tail -n 20 --type BookCopyLentToReader --where BookID=b1 --follow
    dynamic-streams export events.ndjson
    dynamic-streams import events.ndjson

The DSN comes from ``--dsn`` or ``DYNAMIC_STREAMS_DSN``. Events travel as NDJSON, one JSON
object per line with the fields of :class:`RecordedEvent` (``occurred_at`` in ISO 8601);
``import`` needs ``event_type`` and ``payload`` and keeps ``metadata``, ``occurred_at``,
``id`` and ``tags`` when given (new sequence numbers are drawn). Exit status: 0 done, 1 the
store failed (the message says why), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import IO, Any, TextIO

from dynamic_streams.errors import Error
from dynamic_streams.events import Event, RecordedEvent
from dynamic_streams.filter import EventFilter, P, Predicate, build_event_filter
from dynamic_streams.store import DSN_ENV, EventStore

__all__ = ["main"]

PROG = "dynamic-streams"


def _json(value: Any) -> str:
    """Compact JSON that writes every number exactly (a ``Decimal`` as its digits)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except TypeError:
        pass
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_json(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_json(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _line(e: RecordedEvent) -> str:
    return _json(
        {
            "sequence_number": e.sequence_number,
            "occurred_at": e.occurred_at.isoformat(),
            "event_type": e.event_type,
            "payload": e.payload,
            "metadata": e.metadata,
            "id": None if e.id is None else str(e.id),
            "tags": list(e.tags),
        }
    )


def _event(line: str, number: int) -> Event:
    try:
        # Numbers are kept as written: a float would round long decimals.
        record = json.loads(line, parse_float=Decimal)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        occurred = record.get("occurred_at")
        return Event(
            record["event_type"],
            _json(record["payload"]),
            metadata=None if record.get("metadata") is None else _json(record["metadata"]),
            occurred_at=None if occurred is None else datetime.fromisoformat(occurred),
            id=record.get("id"),
            tags=record.get("tags") or (),
        )
    except (ValueError, KeyError, TypeError) as err:
        missing = f"no {err}" if isinstance(err, KeyError) else str(err)
        raise Error(f"line {number}: {missing}") from err


class _Progress:
    """A progress line on stderr while it is a terminal; a summary at the end either way."""

    def __init__(self, verb: str, total: int | None, stream: TextIO) -> None:
        self.verb, self.total, self.stream = verb, total, stream
        self.started = self.shown = time.monotonic()
        self.live = stream.isatty()
        self.done = 0

    def __call__(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.live and now - self.shown >= 0.2:
            self.shown = now
            self.stream.write("\r" + self._text(now))
            self.stream.flush()

    def _text(self, now: float) -> str:
        rate = self.done / max(now - self.started, 1e-9)
        if self.total:
            share = min(self.done / self.total, 1.0)
            bar = "#" * int(share * 30)
            return f"[{bar:<30}] {self.done:,}/{self.total:,} events, {rate:,.0f}/s"
        return f"{self.done:,} events, {rate:,.0f}/s"

    def finish(self) -> None:
        seconds = time.monotonic() - self.started
        end = "\r" if self.live else ""
        self.stream.write(f"{end}{self.verb} {self.done:,} events in {seconds:.1f} s\n")


def _value(text: str) -> str | int | float | bool:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a JSON value: {text}") from None
    if not isinstance(value, (str, int, float, bool)):
        raise argparse.ArgumentTypeError(f"a string, number or boolean, not {text}")
    return value


def _predicate(text: str) -> Predicate:
    """``key=value`` (a string) or ``key:=json`` (a number, boolean or quoted string)."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected key=value or key:=json, got {text!r}")
    value: str | int | float | bool = raw
    if key.endswith(":"):
        key, value = key[:-1], _value(raw)
    if not key:
        raise argparse.ArgumentTypeError(f"the key is empty in {text!r}")
    return P(key, value)


def _filter(args: argparse.Namespace) -> EventFilter | None:
    """One item of the types, tags and predicates given; None (every event) without any."""
    types: list[str] = args.type or []
    tags: list[str] = args.tag or []
    where: list[Predicate] = args.where or []
    if not (types or tags or where):
        return None
    item: Any = build_event_filter().matching()
    if types:
        item = item.any_event_type_of(*types)
    if where:
        step = "any_predicate_of" if args.any_where else "all_predicates_of"
        item = getattr(item, f"and_{step}" if types else step)(*where)
    if tags:
        step = "any_tag_of" if args.any_tag else "all_tags_of"
        item = getattr(item, f"and_{step}" if (types or where) else step)(*tags)
    result: EventFilter = item.finalize()
    return result


def _create_schema(store: EventStore, args: argparse.Namespace, out: TextIO) -> None:
    store.create_schema()
    out.write(f"{args.table}: schema current\n")


def _head(store: EventStore, args: argparse.Namespace, out: TextIO) -> None:
    out.write(f"{store.head()}\n")


def _tail(store: EventStore, args: argparse.Namespace, out: TextIO) -> None:
    filter = _filter(args)
    if args.after is not None:
        last = args.after
        for e in store.read(filter, after=args.after, limit=args.lines or None):
            out.write(_line(e) + "\n")
            last = e.sequence_number
    else:
        head = store.head()
        newest = list(store.read(filter, backwards=True, limit=args.lines)) if args.lines else []
        for e in reversed(newest):
            out.write(_line(e) + "\n")
        last = head
    out.flush()
    if args.follow:
        with store.subscribe(filter, after=last) as events:
            for e in events:
                out.write(_line(e) + "\n")
                out.flush()


def _export(store: EventStore, args: argparse.Namespace, out: TextIO) -> None:
    progress = _Progress("exported", store.head(), sys.stderr)
    target: IO[str] = out if args.file == "-" else open(args.file, "w", encoding="utf-8")  # noqa: SIM115
    try:
        n = 0
        for n, e in enumerate(store.read(_filter(args), batch_size=5000), 1):
            target.write(_line(e) + "\n")
            if n % 1000 == 0:
                progress(n)
        progress(n)
    finally:
        if target is not out:
            target.close()
    progress.finish()


def _lines(source: IO[str]) -> Iterator[Event]:
    for number, line in enumerate(source, 1):
        if line.strip():
            yield _event(line, number)


def _import(store: EventStore, args: argparse.Namespace, out: TextIO) -> None:
    source: IO[str] = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    try:
        total = None
        if source is not sys.stdin:
            total = sum(1 for line in source if line.strip())
            source.seek(0)
        progress = _Progress("imported", total, sys.stderr)
        progress(store.import_events(_lines(source), batch_size=args.batch_size, progress=progress))
    finally:
        if source is not sys.stdin:
            source.close()
    progress.finish()


def _embedded(args: argparse.Namespace, out: TextIO) -> None:
    from dynamic_streams.embedded import EmbeddedPostgres

    with EmbeddedPostgres(args.data_dir) as server:
        out.write(f"{server.dsn}\n")
        out.flush()
        sys.stderr.write(
            f"PostgreSQL is running. In another shell: export {DSN_ENV}='{server.dsn}'\n"
            "Stop it with Ctrl-C.\n"
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            time.sleep(3600)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A Dynamic Consistency Boundary event store on PostgreSQL.",
        epilog=f"The DSN comes from --dsn or the environment variable {DSN_ENV}.",
    )
    parser.add_argument("--dsn", help=f"the database (default: ${DSN_ENV})")
    parser.add_argument("--table", default="events", help="the events table (default: events)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    text = "Create the tables, or bring them to the current schema (safe while in use)."
    commands.add_parser(
        "create-schema", aliases=["migrate"], help="create or upgrade the tables", description=text
    ).set_defaults(run=_create_schema)
    commands.add_parser(
        "head", help="print the head", description="Print the highest sequence number at or "
        "below which every event is committed."
    ).set_defaults(run=_head)  # fmt: skip

    def filtered(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--type", action="append", metavar="TYPE", help="an event type (repeat: any of them)"
        )
        p.add_argument("--tag", action="append", metavar="TAG", help="a tag (repeat: all of them)")
        p.add_argument("--any-tag", action="store_true", help="any of the tags instead of all")
        p.add_argument(
            "--where", action="append", type=_predicate, metavar="KEY=VALUE",
            help="a payload field equal to a string, or KEY:=JSON for a number or boolean "
            "(repeat: all of them)",
        )  # fmt: skip
        p.add_argument(
            "--any-where", action="store_true", help="any of the predicates instead of all"
        )

    tail = commands.add_parser(
        "tail", help="print the newest events as NDJSON",
        description="Print the newest events (matching the filter) as NDJSON; with --follow, "
        "then every new one as it is committed, until Ctrl-C.",
    )  # fmt: skip
    tail.add_argument("-n", "--lines", type=int, default=10, help="how many (default 10; 0: none)")
    tail.add_argument("--after", type=int, help="start after this sequence number instead")
    tail.add_argument("-f", "--follow", action="store_true", help="then follow new events")
    filtered(tail)
    tail.set_defaults(run=_tail)

    export = commands.add_parser(
        "export", help="write events as NDJSON", description="Write every event (matching the "
        "filter) as NDJSON, in order, to FILE or stdout."
    )  # fmt: skip
    export.add_argument("file", nargs="?", default="-", metavar="FILE", help="default: stdout")
    filtered(export)
    export.set_defaults(run=_export)

    load = commands.add_parser(
        "import", help="append the events of an NDJSON file",
        description="Append the events of an NDJSON file (or stdin) in batches through COPY; "
        "events with ids are skipped when stored already, so a rerun is safe.",
    )  # fmt: skip
    load.add_argument("file", nargs="?", default="-", metavar="FILE", help="default: stdin")
    load.add_argument("--batch-size", type=int, default=10_000, help="events per transaction")
    load.set_defaults(run=_import)

    embedded = commands.add_parser(
        "embedded", help="run a throwaway PostgreSQL and print its DSN",
        description="Start an embedded PostgreSQL (the 'embedded' extra), print its DSN and "
        "keep it running until Ctrl-C; its data is removed then unless --data-dir is given.",
    )  # fmt: skip
    embedded.add_argument("--data-dir", help="keep the data here")
    embedded.set_defaults(run=None)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Runs the command line; returns the exit status."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        if args.command == "embedded":
            _embedded(args, out)
            return 0
        dsn = args.dsn or os.environ.get(DSN_ENV)
        if not dsn:
            sys.stderr.write(f"{PROG}: no DSN: pass --dsn or set {DSN_ENV}\n")
            return 2
        with EventStore(dsn, table=args.table, timeout=None) as store:
            args.run(store, args, out)
        return 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours.
        sys.stderr.close()
        return 0
    except Error as err:
        sys.stderr.write(f"{PROG}: {args.command}: {err}\n")
        return 1
