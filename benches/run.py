"""The one benchmark command: boot (or reuse) the server, prime (or reuse) the stores, run the
criterion engine benches and the pytest-benchmark suite in one go, and write the report.

    python benches/run.py            # what `make bench` runs

Environment: ``DYNAMIC_STREAMS_DSN`` (another server instead of the embedded one),
``DCB_BENCH_EVENTS`` (default 1,000,000), ``DCB_BENCH_SCALE`` (default ``100000,1000000``;
add ``10000000`` for the 10M point), ``DCB_BENCH_AS_FOUND_SCALE`` (default none; for
example ``100000,10000000``: this library's store at each size, written through `append`
and measured right after, on the as-found server).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import dataset  # noqa: E402
import psycopg  # noqa: E402
import report  # noqa: E402
import stores  # noqa: E402
from conftest import AS_FOUND_SCALE, EVENTS, SCALE  # noqa: E402
from dynamic_streams.embedded import EmbeddedPostgres  # noqa: E402


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mb = stores.memory_mb()
    memory = "unknown memory" if mb is None else f"{mb / 1024:.0f} GiB"
    return f"{cpu}, {os.cpu_count()} cores, {memory}, {platform.system()} {platform.release()}"


def pytest_run(env: dict[str, str], results: Path, *selection: str) -> dict[str, object]:
    """The side-by-side suite (or the benchmarks `selection` names), as pytest-benchmark's
    JSON."""
    subprocess.run(
        [sys.executable, "-m", "pytest", str(HERE), "-p", "no:cacheprovider", "--timeout=0",
         "--benchmark-enable", f"--benchmark-json={results}", "--benchmark-columns=median,iqr,ops",
         *selection],
        cwd=ROOT,
        env=env,
        check=True,
    )  # fmt: skip
    loaded: dict[str, object] = json.loads(results.read_text())
    return loaded


class Found(str):
    """The as-found report, with the buffers its queries touched."""

    buffers: dict[str, dict[str, int]]


def as_found(shape: dataset.Shape) -> Found:
    """A user's first benchmark: the embedded server with stock settings, each store written
    through its own write path and measured right after, no VACUUM, no prewarm; then this
    library's query once more after VACUUM ANALYZE."""
    with EmbeddedPostgres() as pg:
        server = stores.Server(pg.dsn)
        loads = []
        # This library's store last: measured the soonest after its load, before autovacuum
        # has had a minute to tidy it, while the baselines have had that minute.
        for name, load in [("eventsourcing", stores.load_eventsourcing),
                           ("psycopg", stores.load_seed), ("ours", stores.load_ours)]:  # fmt: skip
            started = time.monotonic()
            load(server, EVENTS)
            loads.append(f"{name} {time.monotonic() - started:.0f} s")
        print(f"as found: loaded ({', '.join(loads)})", flush=True)
        buffers = stores.query_buffers(server, shape)
        env = os.environ | {"DYNAMIC_STREAMS_DSN": server.dsn, "DCB_BENCH_AS_FOUND": "1"}
        results = ROOT / "target" / "bench-results-as-found.json"
        run = pytest_run(
            env,
            results,
            "-k",
            "test_query and not scale and not floor or test_append_one or test_use_case "
            "or test_throughput",
        )
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        vacuumed = pytest_run(
            env, Path(f"{results}.vacuumed"), "-k", "test_query and ours-sync and not scale"
        )
        for size in AS_FOUND_SCALE:
            started = time.monotonic()
            stores.load_ours(server, size)
            loads.append(f"ours at {size:,} events {time.monotonic() - started:.0f} s")
            scaled = pytest_run(
                env | {"DCB_BENCH_SCALE": str(size)},
                Path(f"{results}.{size}"),
                "-k",
                "test_query_scale",
            )
            run["benchmarks"].extend(scaled["benchmarks"])  # type: ignore[attr-defined]
        text = report.render(
            run,
            {},
            machine=machine(),
            postgres=f"{server.description}. Loaded through each store's own write path in "
            f"batches of {stores.LOAD_BATCH:,} ({', '.join(loads)}), measured right after, "
            "no VACUUM, no prewarm",
            events=EVENTS,
            as_found=vacuumed,
        )
    found = Found("**As found**: " + text)
    found.buffers = buffers
    return found


def main() -> int:
    server = stores.Server()
    try:
        print(
            f"PostgreSQL {server.version}; priming {EVENTS:,} events (scale: {SCALE})", flush=True
        )
        stores.prime_ours(server, EVENTS)
        stores.prime_seed(server, EVENTS)
        stores.prime_eventsourcing(server, EVENTS)
        for size in SCALE:
            stores.prime_ours(server, size)
        # The side-by-side stores start in shared buffers; each scale point is read in just
        # before it is measured (tests/test_bench.py, `scaled`).
        stores.settle(server)
        stores.prewarm(server, EVENTS)
        shape, rows = dataset.generate(EVENTS)
        for _ in rows:
            pass
        tuned_buffers = stores.query_buffers(server, shape)
        env = os.environ | {
            "DYNAMIC_STREAMS_DSN": server.dsn,
            "DCB_BENCH_DSN": server.dsn,
            "DCB_BENCH_TABLE": f"bench_{EVENTS}.events",
            "DCB_BENCH_BOOK": shape.copies[0],
            "DCB_BENCH_READER": shape.readers[0],
        }
        print("criterion: the engine alone", flush=True)
        subprocess.run(
            ["cargo", "bench", "--bench", "roundtrip", "--", "--noplot"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        results = ROOT / "target" / "bench-results.json"
        print("pytest-benchmark: side by side", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                str(HERE),
                "-p",
                "no:cacheprovider",
                "--timeout=0",
                "--benchmark-enable",
                "--benchmark-save-data",
                f"--benchmark-json={results}",
                "--benchmark-columns=median,iqr,ops",
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )
        # The Python layer is a difference of two medians measured minutes apart, smaller than
        # this machine's drift: measure the pair back to back, five times, keep the median.
        layer = []
        for _ in range(5):
            subprocess.run(
                ["cargo", "bench", "--bench", "roundtrip", "--", "--noplot", "engine: query"],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            engine = report.criterion_medians(ROOT / "target" / "criterion")
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    str(HERE),
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "--timeout=0",
                    "--benchmark-enable",
                    "-k",
                    "python_layer",
                    f"--benchmark-json={results}.layer",
                ],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            python = json.loads(Path(f"{results}.layer").read_text())["benchmarks"][0]["stats"][
                "median"
            ]
            layer.append((engine["engine: query copy + reader"], python))
        tuned = report.render(
            json.loads(results.read_text()),
            report.criterion_medians(ROOT / "target" / "criterion"),
            layer=layer,
            machine=machine(),
            postgres=server.description,
            events=EVENTS,
        )
        server.stop()
        found = as_found(shape)
        text = (
            "**Tuned**: shared buffers a quarter of memory, stores loaded by COPY and "
            "prewarmed, and vacuumed before each benchmark.\n\n"
            + tuned
            + "\n"
            + found
            + report.buffers_table({"tuned": tuned_buffers, "as found": found.buffers})
        )
        (HERE / "REPORT.md").write_text(text)
        report.update_readme(ROOT / "README.md", text)
        print(text)
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
