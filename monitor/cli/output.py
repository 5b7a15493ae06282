"""What commands print: one JSON document, or a table with notes under it."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from monitor.tables import table


def print_json(document: Any) -> None:
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def show(
    as_json: bool,
    document: Mapping[str, Any],
    rows: Sequence[Sequence[Any]],
    headers: Sequence[str],
    notes: Sequence[str] = (),
) -> None:
    """`document` as JSON, or `rows` as a table (control characters escaped) and `notes`."""
    if as_json:
        print_json(document)
        return
    print(table(rows, headers))
    for note in notes:
        print(note)


def when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str | None:
    """A UTC time for a table cell; None prints as '-'."""
    return value.strftime(fmt) if value is not None else None


def short(digest: str | None) -> str | None:
    """`sha256:` and the first 12 hex digits: enough to tell digests apart in a table."""
    return digest[:19] if digest else None
