"""The benchmark data set: the library domain, generated deterministically from a seed.

Every copy is added; most are lent and returned one to three times, some loans are never
returned, some copies are removed; many readers. Events are one second apart, in the order
a library would have produced them.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

ADDED = "BookCopyAddedToCirculation"
REMOVED = "BookCopyRemovedFromCirculation"
REGISTERED = "ReaderRegistered"
LENT = "BookCopyLentToReader"
RETURNED = "BookCopyReturnedByReader"
MAX_LOANS = 10
ALL_TYPES = [ADDED, REMOVED, REGISTERED, "ReaderContractCanceled", LENT, RETURNED]

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
VERSION = 4  # bump when the generator changes: primed stores are rebuilt


@dataclass(frozen=True)
class Row:
    occurred_at: datetime
    event_type: str
    payload: dict[str, str | int]

    def payload_json(self) -> str:
        return json.dumps(self.payload, separators=(",", ":"))

    def tags(self) -> list[str]:
        return [f"{k}:{self.payload[k]}" for k in ("BookID", "ReaderID") if k in self.payload]


def _id(rng: random.Random) -> str:
    """A UUIDv7-shaped id from the seeded generator (so the data set is reproducible)."""
    value = rng.getrandbits(128)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


@dataclass
class Shape:
    """What a data set of ``events`` events holds, and names of entities to benchmark with."""

    events: int
    readers: list[str]
    copies: list[str]
    #: copies in circulation and not lent at the end: free to lend
    free_copies: list[str]
    #: readers holding no copy at the end
    idle_readers: list[str]


def generate(events: int, seed: int = 42) -> tuple[Shape, Iterator[Row]]:
    """The data set's shape and its rows (a generator; ``shape.free_copies`` is complete once
    the rows are exhausted)."""
    rng = random.Random(seed)
    n_readers = max(10, events // 25)
    n_copies = max(10, events // 5)
    readers = [_id(rng) for _ in range(n_readers)]
    copies = [_id(rng) for _ in range(n_copies)]
    shape = Shape(events, readers, copies, [], [])

    def rows() -> Iterator[Row]:
        count = 0
        t = START

        def emit(event_type: str, payload: dict[str, str | int]) -> Row:
            nonlocal count, t
            count += 1
            t += timedelta(seconds=1)
            return Row(t, event_type, payload)

        for i, r in enumerate(readers):
            if count == events:
                return
            yield emit(REGISTERED, {"ReaderID": r, "Name": f"Reader {i}"})
        loans_left = {}
        for i, c in enumerate(copies):
            if count == events:
                return
            loans_left[c] = rng.choice((1, 2, 3, 3))
            yield emit(
                ADDED,
                {
                    "BookID": c,
                    "ISBN": f"978-3-{i % 100000:05d}-{i % 997:03d}-{i % 10}",
                    "Title": f"Title {i % 50000}",
                    "Authors": f"Author {i % 20000}",
                    "Edition": 1 + i % 5,
                    "Publisher": f"Publisher {i % 300}",
                    "PublicationYear": 1950 + i % 75,
                },
            )
        lent_to: dict[str, str] = {}
        loans = dict.fromkeys(readers, 0)
        pending = list(copies)
        while count < events and pending:
            j = rng.randrange(len(pending))
            c = pending[j]
            if c in lent_to:
                if rng.random() < 0.08:  # never returned
                    pending[j] = pending[-1]
                    pending.pop()
                    continue
                reader = lent_to.pop(c)
                loans[reader] -= 1
                yield emit(RETURNED, {"BookID": c, "ReaderID": reader})
            elif loans_left[c] > 0:
                reader = rng.choice(readers)
                if loans[reader] >= MAX_LOANS:  # the library's rule holds in the data too
                    continue
                loans_left[c] -= 1
                loans[reader] += 1
                lent_to[c] = reader
                yield emit(LENT, {"BookID": c, "ReaderID": reader})
            else:
                pending[j] = pending[-1]
                pending.pop()
                if rng.random() < 0.1:
                    loans_left[c] = -1
                    yield emit(REMOVED, {"BookID": c})
        shape.free_copies.extend(
            c for c in copies if c not in lent_to and loans_left.get(c, 0) >= 0
        )
        shape.idle_readers.extend(r for r in readers if loans[r] == 0)

    return shape, rows()
