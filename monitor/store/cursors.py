"""Opaque keyset cursors: the sort key of the last item of a page, as URL-safe text."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import orjson

from monitor.errors import InvalidQuery


def encode_key(values: Sequence[str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def cursor_json(cursor: str) -> Any:
    """The JSON value a cursor holds; None when it is not base64 of JSON."""
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        return None


def decode_key(cursor: str, arity: int) -> tuple[str, ...]:
    """The key `encode_key` wrote; InvalidQuery for anything this server did not issue."""
    values = cursor_json(cursor)
    if (
        not isinstance(values, list)
        or len(values) != arity
        or not all(isinstance(v, str) for v in values)
    ):
        raise InvalidQuery("invalid_cursor", "cursor is not one this server issued")
    return tuple(values)
