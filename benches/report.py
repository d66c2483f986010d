"""Turns one benchmark run (pytest-benchmark JSON and criterion's estimates) into the report:
medians, p95, ratios to each baseline measured in the same run, and the targets."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

IMPLS = ["ours-sync", "ours-async", "psycopg", "eventsourcing"]
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
# Parts the id of a benchmark's pass from its implementation's name: `ours-sync@2`.
PASS_MARK = "@"


def criterion_medians(root: Path) -> dict[str, float]:
    """Median seconds of each criterion benchmark of the latest run, by its id."""
    found = {}
    for bench in root.glob("*/new/benchmark.json"):
        meta = json.loads(bench.read_text())
        estimates = json.loads((bench.parent / "estimates.json").read_text())
        found[meta["full_id"]] = estimates["median"]["point_estimate"] / 1e9
    return found


def _collect(run: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Each group's benchmarks by implementation, the rounds of its passes (conftest.py)
    pooled: the median and p95 of all of them."""
    pooled: dict[str, dict[str, list[Any]]] = {}
    for b in run["benchmarks"]:
        name = str(b["param"]).split(PASS_MARK)[0]
        pooled.setdefault(b["group"], {}).setdefault(name, []).append(b)
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for group, by_name in pooled.items():
        for name, passes in by_name.items():
            data = [t for b in passes for t in b["stats"].get("data") or []]
            if len(passes) > 1 and not data:
                raise ValueError(f"{group}, {name}: passes without their rounds' data to pool")
            if len(data) < 2:
                (only,) = passes
                median, p95 = only["stats"]["median"], only["stats"]["max"]
            else:
                median, p95 = statistics.median(data), statistics.quantiles(data, n=20)[-1]
            groups.setdefault(group, {})[name] = {
                "median": median,
                "p95": p95,
                "extra": passes[0].get("extra_info", {}),
            }
    return groups


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _check(ok: bool) -> str:
    return "met" if ok else "**not met**"


def render(
    run: dict[str, Any],
    engine: dict[str, float],
    *,
    machine: str,
    postgres: str,
    events: int,
    layer: list[tuple[float, float]] | None = None,
    as_found: dict[str, Any] | None = None,
) -> str:
    """The table of one configuration. `as_found`: this is the as-found run, and that is
    the run of this library's query after VACUUM ANALYZE of the same stores."""
    groups = _collect(run)
    lines = [
        f"Machine: {machine}. PostgreSQL {postgres}, the same server for every store. "
        f"{events:,} events of the library domain per store. Medians (p95) in milliseconds; "
        "ratios are this library's sync store over each baseline, measured in the same run.",
        "",
        "| operation | ours, sync | ours, asyncio | psycopg (seed design) | eventsourcing DCB | ÷ psycopg | ÷ eventsourcing | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []

    def latency_row(title: str, group_prefix: str, target: str, ok: Any) -> None:
        group = next((g for name, g in groups.items() if name.startswith(group_prefix)), None)
        if group is None or not all(i in group for i in IMPLS):
            return
        m = {i: group[i]["median"] for i in IMPLS}
        cells = [f"{_ms(m[i])} ({_ms(group[i]['p95'])})" for i in IMPLS]
        r_pg, r_es = m["ours-sync"] / m["psycopg"], m["ours-sync"] / m["eventsourcing"]
        verdict = ok(m)
        verdicts.append((title, verdict))
        lines.append(
            f"| {title} | {' | '.join(cells)} | {r_pg:.2f}x | {r_es:.2f}x | {target}: {_check(verdict)} |"
        )

    vacuumed = None
    if as_found is not None:
        group = next(g for name, g in _collect(as_found).items() if name.startswith("query:"))
        vacuumed = group["ours-sync"]["median"]
        latency_row(
            "query (copy + reader, 6 types)",
            "query:",
            "≤ 0.6x psycopg, ≤ 1.5x after VACUUM",
            lambda m: m["ours-sync"] <= 0.6 * m["psycopg"] and m["ours-sync"] <= 1.5 * vacuumed,
        )
        latency_row("append 1 event, guarded", "append: 1", "—", lambda m: True)
    else:
        latency_row(
            "query (copy + reader, 6 types)",
            "query:",
            "≤ 0.4x both",
            lambda m: m["ours-sync"] <= 0.4 * min(m["psycopg"], m["eventsourcing"]),
        )
        latency_row(
            "append 1 event, guarded",
            "append: 1",
            "≤ 0.7x eventsourcing, < psycopg",
            lambda m: m["ours-sync"] <= 0.7 * m["eventsourcing"] and m["ours-sync"] < m["psycopg"],
        )
    latency_row("append 5 events, guarded", "append: 5", "—", lambda m: True)
    latency_row(
        "use case: lend (query, decide, append)",
        "use case:",
        "≤ 0.5x the better",
        lambda m: m["ours-sync"] <= 0.5 * min(m["psycopg"], m["eventsourcing"]),
    )

    group = next((g for name, g in groups.items() if name.startswith("throughput:")), None)
    if group is not None and all(i in group for i in IMPLS):
        rate = {
            i: group[i]["extra"].get("use_cases_per_round", 0) / group[i]["median"] for i in IMPLS
        }
        best = max(rate["psycopg"], rate["eventsourcing"])
        ok = rate["ours-sync"] >= 2 * best
        verdicts.append(("throughput", ok))
        cells = [f"{rate[i]:,.0f}/s" for i in IMPLS]
        lines.append(
            f"| throughput, 8 workers, disjoint copies (use cases per second) | {' | '.join(cells)} "
            f"| {rate['ours-sync'] / rate['psycopg']:.2f}x | {rate['ours-sync'] / rate['eventsourcing']:.2f}x "
            f"| ≥ 2x the better: {_check(ok)} |"
        )

    lines.append("")
    floors = _floors(groups)
    if floors:
        lines.append(floors)
    if vacuumed is not None:
        query = next(g for name, g in groups.items() if name.startswith("query:"))
        lines.append(
            f"The same stores after VACUUM ANALYZE: this library's query {_ms(vacuumed)} ms "
            f"(as found {query['ours-sync']['median'] / vacuumed:.2f}x that)."
        )
    if layer:
        overheads = sorted((python - eng) * 1e6 for eng, python in layer)
        overhead = statistics.median(overheads)
        ok = overhead <= 25
        verdicts.append(("python layer", ok))
        pairs = "; ".join(f"{eng * 1e3:.3f} vs {python * 1e3:.3f}" for eng, python in layer)
        lines.append(
            "The Python layer: one fixed lending query through the Rust engine alone (criterion) "
            "and through `EventStore.query` (pytest-benchmark), measured back to back five times "
            f"(ms, engine vs Python: {pairs}): a median of {overhead:.0f} µs over the engine "
            f"(target ≤ 25 µs: {_check(ok)})."
        )
    engine_append = engine.get("engine: append 1 event, guarded")
    if engine_append is not None:
        lines.append(
            f"A guarded single append through the engine alone: {engine_append * 1e3:.3f} ms."
        )
    lines.append("")

    lines.extend(_read_side(groups, verdicts))

    scale = next((g for name, g in groups.items() if name.startswith("scale:")), None)
    if scale:
        sizes = sorted(scale, key=int)
        if as_found is not None:
            lines.append(
                "This library's store at each size, written through `append` and measured "
                "right after its load:\n"
            )
        lines.append("| events in the store | " + " | ".join(f"{int(s):,}" for s in sizes) + " |")
        lines.append("|---|" + "---|" * len(sizes))
        lines.append(
            "| query median (p95), ms | "
            + " | ".join(f"{_ms(scale[s]['median'])} ({_ms(scale[s]['p95'])})" for s in sizes)
            + " |"
        )
        first, last = scale[sizes[0]]["median"], scale[sizes[-1]]["median"]
        ratio = last / first
        # As found, each size was written through `append` and measured right after.
        limit = 2.0 if as_found is not None else 1.5
        if int(sizes[-1]) >= 10_000_000 and int(sizes[0]) <= 100_000:
            verdicts.append(("scale", ratio <= limit))
            lines.append(
                f"\n10M over 100k: {ratio:.2f}x (target ≤ {limit}x: {_check(ratio <= limit)})."
            )
        else:
            request = (
                "DCB_BENCH_AS_FOUND_SCALE=100000,10000000"
                if as_found is not None
                else "DCB_BENCH_SCALE=100000,1000000,10000000"
            )
            lines.append(
                f"\nLargest over smallest: {ratio:.2f}x (the 10M point runs on request: {request})."
            )
    return "\n".join(lines) + "\n"


def _floors(groups: dict[str, dict[str, dict[str, Any]]]) -> str | None:
    """The query's floors (stores.Floor) against psycopg's query, when the run measured them."""
    query = next((g for name, g in groups.items() if name.startswith("query:")), None)
    if not query or not all(f in query for f in ("floor-select", "floor-transaction", "psycopg")):
        return None
    m = {name: query[name]["median"] for name in ("floor-select", "floor-transaction", "psycopg")}
    return (
        "The query's floor on this machine, measured in turn with the others: libpq sending "
        "this library's statement and leaving its rows undecoded took "
        f"{_ms(m['floor-transaction'])} ms inside the read's transaction under one Sync "
        f"({m['floor-transaction'] / m['psycopg']:.2f}x psycopg), the bare SELECT "
        f"{_ms(m['floor-select'])} ms ({m['floor-select'] / m['psycopg']:.2f}x)."
    )


def _read_side(groups: dict[str, dict[str, dict[str, Any]]], verdicts: list[Any]) -> list[str]:
    """The read side's table, when the run measured it."""

    def group(prefix: str) -> dict[str, dict[str, Any]] | None:
        return next((g for name, g in groups.items() if name.startswith(prefix)), None)

    catch_up, head, live = (
        group("read side: catch-up"),
        group("read side: head"),
        group("read side: live"),
    )
    imported = group("read side: import")
    if not (catch_up and head and live and imported):
        return []
    lines = ["| read side | this library | baseline | target |", "|---|---|---|---|"]

    def row(title: str, ours: str, base: str, target: str, ok: bool) -> None:
        verdicts.append((title, ok))
        lines.append(f"| {title} | {ours} | {base} | {target}: {_check(ok)} |")

    rate = {who: g["extra"]["events"] / g["median"] for who, g in catch_up.items()}
    ratio = rate["ours-sync"] / rate["psycopg"]
    row(
        f"catch-up: `read()` of every lending event ({catch_up['ours-sync']['extra']['events']:,}), events/s",
        f"{rate['ours-sync']:,.0f}",
        f"psycopg into dicts {rate['psycopg']:,.0f} ({ratio:.2f}x)",
        "≥ 2x psycopg and ≥ 600,000/s",
        ratio >= 2 and rate["ours-sync"] >= 600_000,
    )
    grown = catch_up["ours-sync"]["extra"]["memory_growth_mb"]
    row(
        "memory a fresh process grows reading every event",
        f"{grown:.0f} MB",
        "—",
        "< 50 MB",
        grown < 50,
    )
    h = head["None"] if "None" in head else next(iter(head.values()))
    row(
        "`head()`, median (p95)",
        f"{_ms(h['median'])} ({_ms(h['p95'])}) ms",
        "—",
        "< 0.3 ms",
        h["median"] < 0.3e-3,
    )
    load = next(iter(imported.values()))
    row(
        f"`import_events()` of the data set ({load['extra']['events']:,} events, generator included)",
        f"{load['median']:.1f} s",
        "—",
        "< 60 s",
        load["median"] < 60,
    )
    x = next(iter(live.values()))["extra"]
    row(
        "live: append call to delivery, 8 writers, 4 subscribers: median / p99",
        f"{x['median_ms']:.2f} / {x['p99_ms']:.2f} ms",
        "—",
        "< 5 / < 50 ms",
        x["median_ms"] < 5 and x["p99_ms"] < 50,
    )
    kept = x["watched_per_s"] / x["alone_per_s"]
    row(
        "writers' appends/s with 4 subscribers attached (medians of 3 alternations)",
        f"{x['watched_per_s']:,.0f}",
        f"without subscribers {x['alone_per_s']:,.0f} ({kept:.1%})",
        "≥ 90%",
        kept >= 0.9,
    )
    return [*lines, ""]


def buffers_table(configs: dict[str, dict[str, dict[str, int]]]) -> str:
    """Shared buffers of one lending query (EXPLAIN ANALYZE, median over 21 pairs)."""
    lines = [
        "",
        "Shared buffers of one lending query (EXPLAIN (ANALYZE, BUFFERS), median of 21 pairs "
        "no benchmark uses):",
        "",
        "| configuration | store | hit | read | dirtied | written |",
        "|---|---|---|---|---|---|",
    ]
    for config, stores in configs.items():
        for store, b in stores.items():
            name = "this library" if store == "ours" else "psycopg (seed design)"
            lines.append(
                f"| {config} | {name} | {b['hit']} | {b['read']} | {b['dirtied']} | {b['written']} |"
            )
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str) -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        return
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    readme.write_text(pattern.sub(lambda _: f"{START}\n{table}{END}", text))
