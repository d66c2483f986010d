"""A short lending simulation: many readers and book copies, several threads, real conflicts,
and a read model of the copies currently lent, kept up to date live by a projector.

    python -m dynamic_streams.examples.library [--threads 8] [--operations 400]

Uses ``DYNAMIC_STREAMS_DSN`` when set, else starts an embedded PostgreSQL server.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack

from dynamic_streams import DSN_ENV, EventStore, Projector, build_event_filter
from dynamic_streams.examples.library import DomainError, Library, new_id
from dynamic_streams.examples.library.service import LOANS, BooksLent, check_invariants


def main(argv: list[str] | None = None) -> int:
    """Run the simulation; the exit status is 1 if an invariant was violated."""
    parser = argparse.ArgumentParser(description="A short lending simulation.")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--operations", type=int, default=400, help="per thread")
    parser.add_argument("--books", type=int, default=40)
    parser.add_argument("--readers", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    with ExitStack() as stack:
        dsn = os.environ.get(DSN_ENV)
        if not dsn:
            from dynamic_streams.embedded import EmbeddedPostgres

            print("starting an embedded PostgreSQL server ...")
            dsn = stack.enter_context(EmbeddedPostgres()).dsn
        table = f"library_demo_{new_id().replace('-', '')[-12:]}"
        store = stack.enter_context(EventStore(dsn, table=table, pool_size=args.threads))
        store.create_schema()
        library = Library(store)

        books = [new_id() for _ in range(args.books)]
        readers = [new_id() for _ in range(args.readers)]
        for i, b in enumerate(books):
            library.add_book_copy(b, Title=f"Book {i}", ISBN=f"978-0-00-{i:06d}-0")
        for i, r in enumerate(readers):
            library.register_reader(r, f"Reader {i}")

        outcomes: Counter[str] = Counter()
        lock = threading.Lock()
        start = threading.Barrier(args.threads)

        def worker(n: int) -> None:
            rng = random.Random(args.seed * 1000 + n)
            mine: list[tuple[str, str]] = []
            start.wait()
            for _ in range(args.operations):
                op = "lend" if rng.random() < 0.6 or not mine else "return"
                if op == "lend":
                    book, reader = rng.choice(books), rng.choice(readers)
                else:
                    # Mostly a loan this worker made; now and then a stranger's claim.
                    book, reader = mine.pop(rng.randrange(len(mine)))
                    if rng.random() < 0.1:
                        reader = rng.choice(readers)
                try:
                    if op == "lend":
                        done = library.lend_book_copy(book, reader)
                        if done:
                            mine.append((book, reader))
                    else:
                        done = library.return_book_copy(book, reader)
                    result = f"{op}: appended" if done else f"{op}: nothing to do"
                except DomainError as err:
                    result = f"{op}: refused ({type(err).__name__})"
                with lock:
                    outcomes[result] += 1

        # The read model follows the log while the workers write it.
        lent = BooksLent()
        projector = Projector(store, "books-lent", LOANS, lent.apply, poll_interval=0.5)
        following = threading.Thread(target=projector.run, daemon=True)
        following.start()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.threads)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(1)
            position, borrower = lent.snapshot()
            print(f"  live read model: {len(borrower)} copies lent (as of event #{position})")
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        head = store.head()
        last_loan = store.query(LOANS).max_sequence_number
        while lent.snapshot()[0] < last_loan:
            time.sleep(0.005)
        caught_up = time.perf_counter() - t0 - elapsed
        projector.stop()
        following.join()

        log = store.query(build_event_filter().matching_any_event().finalize())
        problems = check_invariants(log.events)
        total = sum(outcomes.values())
        loans = sum(1 for e in log if e.event_type == "BookCopyLentToReader")
        print(f"{args.threads} threads, {len(books)} copies, {len(readers)} readers")
        print(f"{total} use-case calls in {elapsed:.2f} s ({total / elapsed:.0f}/s)")
        for outcome, count in sorted(outcomes.items()):
            print(f"  {count:6d}  {outcome}")
        print(f"conflicts retried: {library.conflicts}")
        print(f"loans made: {loans}; events stored: {len(log)} (head #{head})")
        live = lent.snapshot()[1]
        fresh = BooksLent.folded(log.events).borrower
        print(
            f"read model: {len(live)} copies lent, caught up {caught_up * 1e3:.0f} ms after the "
            f"last write; {'the same as' if live == fresh else 'DIFFERENT FROM'} a fresh fold"
        )
        store._native.drop_table()
        if live != fresh:
            problems.append("the live read model differs from a fresh fold of the log")
        if problems:
            print("INVARIANTS VIOLATED:")
            for p in problems[:20]:
                print("  " + p)
            return 1
        print("invariants held: no copy lent twice, no reader above 10 loans")
        return 0


if __name__ == "__main__":
    sys.exit(main())
