"""Where the CPU goes in the throughput workload: client process versus PostgreSQL backends,
per use case, for this library and each baseline (run on purpose, like the benchmarks).

    python benches/cpu_profile.py

Reads the user+system CPU time of this process (Python, the tokio runtime, psycopg) and of
every ``postgres`` process from /proc before and after the same workload the throughput
benchmark runs.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import stores  # noqa: E402
import test_bench as tb  # noqa: E402
from conftest import EVENTS  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / TICK


def client_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    server = stores.Server()
    impls = {
        "ours-sync": stores.Ours(server, f"bench_{EVENTS}.events"),
        "psycopg": stores.Psycopg(server, f"seed_{EVENTS}.events"),
        "eventsourcing": stores.EventSourcing(server, EVENTS),
    }
    print(
        f"{'implementation':<16}{'use cases/s':>12}{'client CPU':>12}{'server CPU':>12}  (per use case)"
    )
    for name, impl in impls.items():
        setup = tb._workload(impl)
        tb._run_threads(*setup()[0])  # warm up
        rounds = 5
        work = [setup()[0] for _ in range(rounds)]
        c0, s0, t0 = client_cpu(), postgres_cpu(), time.perf_counter()
        for args in work:
            tb._run_threads(*args)
        c1, s1, t1 = client_cpu(), postgres_cpu(), time.perf_counter()
        n = rounds * tb.WORKERS * tb.OPS_PER_WORKER
        print(
            f"{name:<16}{n / (t1 - t0):>12,.0f}{(c1 - c0) / n * 1e6:>10,.0f}µs{(s1 - s0) / n * 1e6:>10,.0f}µs"
        )
        impl.close()
    server.stop()


if __name__ == "__main__":
    main()
