"""Batches from log shippers (Fluent Bit, Vector, Logstash HTTP outputs) → raw log lines. Pure.

Accepted bodies:
- NDJSON or a JSON array of records. A record carries the raw line under `log` (Fluent Bit,
  Docker's json-file), `message` (Vector, Logstash) or `line`; a record that already is a
  parsed logrus JSON object (`level` and `msg` keys) is turned back into its JSON line.
- `text/plain`: one raw line per line.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

RAW_KEYS = ("log", "message", "line")


@dataclasses.dataclass(frozen=True, slots=True)
class ShippedBatch:
    lines: tuple[str, ...]
    rejected: tuple[tuple[str, bytes], ...]  # (reason, raw record)


def _line_of(record: Any) -> str | None:
    if isinstance(record, str):
        return record
    if not isinstance(record, dict):
        return None
    for key in RAW_KEYS:
        value = record.get(key)
        if isinstance(value, str):
            return value
    if isinstance(record.get("msg"), str) and isinstance(record.get("level"), str):
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()
    return None


def _clean(line: str) -> list[str]:
    return [part for part in line.replace("\r\n", "\n").split("\n") if part.strip()]


def parse_shipped(body: bytes, content_type: str | None) -> ShippedBatch:
    """The raw lines in a shipper's batch, and each record that holds none, with why."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "text/plain":
        text = body.decode("utf-8", "replace")
        return ShippedBatch(tuple(_clean(text)), ())
    lines: list[str] = []
    rejected: list[tuple[str, bytes]] = []
    stripped = body.lstrip()
    records: list[tuple[Any, bytes]] = []
    if stripped.startswith(b"["):
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ShippedBatch((), (("invalid_json", body),))
        records = [(r, orjson.dumps(r)) for r in document]
    else:
        for raw in body.splitlines():
            if not raw.strip():
                continue
            try:
                records.append((orjson.loads(raw), raw))
            except orjson.JSONDecodeError:
                rejected.append(("invalid_json", raw))
    for record, raw in records:
        line = _line_of(record)
        if line is None:
            rejected.append(("no_log_line", raw))
        else:
            lines.extend(_clean(line))
    return ShippedBatch(tuple(lines), tuple(rejected))
