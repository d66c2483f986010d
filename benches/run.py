"""The one benchmark command: boot (or reuse) the server, prime (or reuse) the stores, run the
criterion engine benches and the pytest-benchmark suite in one go, and write the report.

    python benches/run.py            # what `make bench` runs

Environment: ``DYNAMIC_STREAMS_DSN`` (another server instead of the embedded one),
``DCB_BENCH_EVENTS`` (default 1,000,000), ``DCB_BENCH_SCALE`` (default ``100000,1000000``;
add ``10000000`` for the 10M point).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import dataset  # noqa: E402
import report  # noqa: E402
import stores  # noqa: E402
from conftest import EVENTS, SCALE  # noqa: E402


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
        text = report.render(
            json.loads(results.read_text()),
            report.criterion_medians(ROOT / "target" / "criterion"),
            layer=layer,
            machine=machine(),
            postgres=server.description,
            events=EVENTS,
        )
        (HERE / "REPORT.md").write_text(text)
        report.update_readme(ROOT / "README.md", text)
        print(text)
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
