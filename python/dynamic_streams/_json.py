"""The one JSON encoding of the library: compact, UTF-8 kept, and no NaN or infinity (which
JSON and PostgreSQL's jsonb do not have)."""

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
