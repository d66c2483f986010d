"""Every Python block of the README runs as written.

Each block runs in a fresh directory against a database of its own (``DYNAMIC_STREAMS_DSN``
points at it, as the README tells users to set it). A block whose first line names a file
(``# conftest.py``) is written to that file; when a section's blocks include a test file,
pytest runs them there, with the plugins a user would have installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
FILE_NAME = re.compile(r"# ([\w/]+\.py)$")


def blocks() -> list[tuple[str, list[str]]]:
    """(where, the Python blocks there): a block alone, or the consecutive blocks of files
    that make up one example."""
    text = README.read_text(encoding="utf-8")
    found: list[tuple[str, list[str]]] = []
    heading = "top"
    previous_end = -1
    for match in re.finditer(r"^(#{2,3} [^\n]+)$|^```python\n(.*?)^```$", text, re.S | re.M):
        if match.group(1):
            heading = match.group(1).lstrip("# ")
            continue
        code = match.group(2)
        first = code.splitlines()[0] if code.strip() else ""
        joins = (
            FILE_NAME.match(first) and found and FILE_NAME.match(found[-1][1][-1].splitlines()[0])
        )
        between = text[previous_end : match.start()].strip()
        if joins and not between:
            found[-1][1].append(code)
        else:
            line = text[: match.start()].count("\n") + 1
            found.append((f"README.md:{line} ({heading})", [code]))
        previous_end = match.end()
    return found


BLOCKS = blocks()


@pytest.fixture
def database(event_store_dsn: str) -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards; its DSN."""
    name = f"readme_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(event_store_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    dsn = psycopg.conninfo.make_conninfo(event_store_dsn, dbname=name)
    yield dsn
    with psycopg.connect(event_store_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_the_readme_has_the_blocks_users_copy() -> None:
    assert len(BLOCKS) >= 10
    assert any("async def" in code for _, codes in BLOCKS for code in codes)


@pytest.mark.parametrize(("where", "codes"), BLOCKS, ids=[w for w, _ in BLOCKS])
def test_a_readme_block_runs_as_written(
    where: str, codes: list[str], database: str, tmp_path: Path
) -> None:
    env = {**os.environ, "DYNAMIC_STREAMS_DSN": database}
    files = []
    for n, code in enumerate(codes):
        named = FILE_NAME.match(code.splitlines()[0])
        path = tmp_path / (named.group(1) if named else f"block_{n}.py")
        path.write_text(code, encoding="utf-8")
        files.append(path)
    if any(p.name.startswith("test_") for p in files):
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    else:
        [script] = files
        command = [sys.executable, str(script)]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{where}\n{done.stdout}\n{done.stderr}"
    if command[1:3] == ["-m", "pytest"]:
        # Every test ran and passed: none skipped for want of an async plugin.
        assert re.search(r"^\d+ passed\b", done.stdout, re.M), done.stdout
        assert "skipped" not in done.stdout, done.stdout
