"""The one JSON encoding of the library, and the checks on numbers that cross into the
engine: compact JSON, UTF-8 kept, no NaN or infinity (which JSON and PostgreSQL's jsonb do
not have), and sequence numbers within PostgreSQL's bigint."""

from __future__ import annotations

import json
from typing import Any

from dynamic_streams.errors import InvalidInputError


def encode(what: str, value: Any) -> str:
    """``value`` as JSON text; :class:`InvalidInputError` naming ``what`` if it has none."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{what} cannot be encoded as JSON: {err}") from err
    except RecursionError as err:
        raise InvalidInputError(f"{what} is nested too deeply to encode as JSON") from err


_BIGINT = range(-(2**63), 2**63)


def check_bigint(what: str, value: int) -> int:
    """``value`` if it fits PostgreSQL's bigint (as sequence numbers do); else
    :class:`InvalidInputError` naming ``what``."""
    if value not in _BIGINT:
        raise InvalidInputError(f"{what} must fit in 64 bits, got {value}")
    return value
