"""Writers held open on purpose, to test what others do meanwhile."""

from __future__ import annotations

import threading
from typing import Any

import psycopg


# Commits delayed on purpose: a trigger sleeps inside the insert of an event whose payload
# has "delay" (seconds), after its sequence number was drawn and before it commits.
def install_delay(dsn: str, table: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE FUNCTION {table}_delay() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "PERFORM pg_sleep((NEW.payload->>'delay')::float8); RETURN NULL; END $$"
        )
        conn.execute(
            f"CREATE TRIGGER delay AFTER INSERT ON {table} FOR EACH ROW "
            f"WHEN (NEW.payload ? 'delay') EXECUTE FUNCTION {table}_delay()"
        )


def in_thread(target: Any, *args: Any) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t
