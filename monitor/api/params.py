"""The read API's input boundary: every query and path parameter is checked before an endpoint
reads it, so a value the store could not compare (a NUL on PostgreSQL, an integer above 64 bits,
a time outside the years the store keeps) is a 400 naming the parameter, never a 500 or a 503.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from monitor.errors import InvalidQuery
from monitor.events import parse_timestamp
from monitor.ingest.boundary import MAX_BIGINT, READ_CEILING, READ_FLOOR, is_safe_key
from monitor.store.cursors import cursor_json

MAX_PARAMETER_CHARS = 1024
TIME_PARAMETERS = ("since", "until")
NUMBER_PARAMETERS = ("limit", "before")


def check_parameters_safe(query: Mapping[str, str], path: Mapping[str, object]) -> None:
    """InvalidQuery (`invalid_<name>`) for the first parameter the store could not take."""
    for name, value in (*query.items(), *path.items()):
        if not isinstance(value, str):
            continue
        if not is_safe_key(name, 64):
            raise InvalidQuery("unknown_parameter", "a parameter name holds control characters")
        if not is_safe_key(value, MAX_PARAMETER_CHARS):
            raise InvalidQuery(
                f"invalid_{name}",
                f"{name} holds control characters or is longer than {MAX_PARAMETER_CHARS}",
            )
        if name in NUMBER_PARAMETERS and value and not _is_bigint(value):
            raise InvalidQuery(f"invalid_{name}", f"{name} must be a whole number")
        if name in TIME_PARAMETERS and value and not _time_in_window(value):
            raise InvalidQuery(
                f"invalid_{name}",
                f"{name} must be an RFC 3339 time (or a day) from 1970 to 9998, "
                "such as 2026-11-27T04:52:00Z",
            )
        if name == "cursor" and value and not _cursor_in_range(value):
            raise InvalidQuery("invalid_cursor", "cursor is not one this server issued")


def _is_bigint(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) <= MAX_BIGINT


def _time_in_window(text: str) -> bool:
    """False for a time (or day) outside the read window or without a UTC equivalent; True
    for anything that is not a time at all (the endpoint names the format it wants)."""
    try:
        when = parse_timestamp(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)  # also a day, or a time Python reads
        except ValueError:
            return True
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            when = parsed.astimezone(UTC)
        except OverflowError:
            return False
    return READ_FLOOR <= when < READ_CEILING


def _cursor_in_range(cursor: str) -> bool:
    """A cursor that decodes must hold only values the store can compare."""
    values = cursor_json(cursor)
    if not isinstance(values, list):
        return True  # not a list of values: the endpoint refuses it
    for value in values:
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            if not -MAX_BIGINT <= value <= MAX_BIGINT:
                return False
        elif isinstance(value, str):
            if not is_safe_key(value, 255) or not _time_in_window(value):
                return False
        elif value is not None:
            return False
    return True
