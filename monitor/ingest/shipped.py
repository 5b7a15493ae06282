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

from monitor.errors import PayloadTooLarge

RAW_KEYS = ("log", "message", "line")


MAX_SAMPLES = 100


@dataclasses.dataclass(frozen=True, slots=True)
class ShippedBatch:
    lines: tuple[str, ...]
    rejected: tuple[tuple[str, bytes], ...]  # (reason, raw record), the first MAX_SAMPLES
    rejected_count: int = 0  # every record that held no line


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
        try:
            return orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()
        except orjson.JSONEncodeError:  # nested deeper than orjson writes
            return None
    return None


def _clean(line: str) -> list[str]:
    return [part for part in line.replace("\r\n", "\n").split("\n") if part.strip()]


def _raw(record: Any) -> bytes:
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError:
        return repr(record)[:4096].encode("utf-8", "backslashreplace")


def parse_shipped(
    body: bytes, content_type: str | None, *, max_records: int = 20_000
) -> ShippedBatch:
    """The raw lines in a shipper's batch, and the records that hold none, with why.

    Work and memory are bounded by `max_records`: a body with more records (or, for a JSON
    array, more than eight commas a record, counted before decoding) raises PayloadTooLarge.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if body.count(b"\n") >= max_records:
        raise PayloadTooLarge(f"more than {max_records} lines in one body")
    if media_type == "text/plain":
        text = body.decode("utf-8", "replace")
        return ShippedBatch(tuple(_clean(text)), ())
    lines: list[str] = []
    rejected: list[tuple[str, bytes]] = []
    rejected_count = 0
    stripped = body.lstrip()
    records: list[tuple[Any, bytes | None]] = []
    if stripped.startswith(b"["):
        if body.count(b",") >= 8 * max_records:
            raise PayloadTooLarge(f"more than {max_records} records in one body")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ShippedBatch((), (("invalid_json", body),), 1)
        if len(document) > max_records:
            raise PayloadTooLarge(f"more than {max_records} records in one body")
        records = [(r, None) for r in document]
    else:
        for raw in body.splitlines():
            if not raw.strip():
                continue
            try:
                records.append((orjson.loads(raw), raw))
            except orjson.JSONDecodeError:
                rejected_count += 1
                if len(rejected) < MAX_SAMPLES:
                    rejected.append(("invalid_json", raw))
    for record, raw_record in records:
        line = _line_of(record)
        if line is None:
            rejected_count += 1
            if len(rejected) < MAX_SAMPLES:
                rejected.append(
                    ("no_log_line", raw_record if raw_record is not None else _raw(record))
                )
        else:
            lines.extend(_clean(line))
    return ShippedBatch(tuple(lines), tuple(rejected), rejected_count)
