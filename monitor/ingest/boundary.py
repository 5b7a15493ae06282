"""The input boundary: every event from a notification, a log line or a shipped batch passes here
before the store. Pure, O(fields).

What it guarantees for an event it returns:
- no NUL, no control character (C0, DEL, C1) and no lone surrogate in any text field; in free
  text they are written out as `\\xNN` / `\\uNNNN`, so the text stays readable and cannot move a
  terminal's cursor or break a table;
- every text field within its column's limit (free text is cut, with `…` at the end);
- every integer within its column's range;
- `occurred_at` inside the sane window: not before `TIME_FLOOR`, not after `now` plus the
  configured clock-skew tolerance.

A field that cannot be made safe without changing what it identifies (an id, a repository, a
tag, a digest) or a number out of range or a time out of the window raises `ParseError`
(reason `unsafe_field` or `time_out_of_window`): the caller quarantines that event alone.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

from monitor.errors import ParseError
from monitor.events import Event

TIME_FLOOR = datetime(2000, 1, 1, tzinfo=UTC)
"""No registry event is older: distribution's first release is from 2015."""

MAX_BIGINT = 2**63 - 1

READ_FLOOR = datetime(1970, 1, 1, tzinfo=UTC)
READ_CEILING = datetime(9999, 1, 1, tzinfo=UTC)
"""Times a query may name (`since`, `until`, a cursor): any the stores can compare."""

# Fields that identify something: refused when unsafe, never rewritten (column limits).
KEY_LIMITS: dict[str, int] = {
    "event_id": 255,
    "repository": 255,
    "from_repository": 255,
    "tag": 128,
    "digest": 160,
}
REFERENCE_LIMIT = 160
# Free text: escaped and cut to these lengths. The indexed ones stay far below PostgreSQL's
# B-tree entry limit (~2700 bytes).
TEXT_LIMITS: dict[str, int] = {
    "media_type": 255,
    "actor": 255,
    "remote_ip": 255,
    "user_agent": 1024,
    "http_method": 16,
    "request_id": 255,
    "request_uri": 2048,
    "route": 64,
    "instance": 255,
    "detail": 2048,
}

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(value: str, limit: int) -> str:
    """`value` with control characters written out and cut to `limit` characters."""
    if not value.isprintable() and _UNSAFE.search(value) is not None:
        value = _UNSAFE.sub(_escape_one, value)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def is_safe_key(value: str, limit: int) -> bool:
    """Whether `value` can be stored as an identifier as it is."""
    return len(value) <= limit and (value.isprintable() or _UNSAFE.search(value) is None)


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """The times an event may carry: from `TIME_FLOOR` to `now + skew`."""

    now: datetime
    skew: timedelta

    @property
    def latest(self) -> datetime:
        return self.now + self.skew

    def check(self, when: datetime, what: str = "occurred_at") -> None:
        if when < TIME_FLOOR or when > self.latest:
            raise ParseError(
                "time_out_of_window",
                f"{what} {when.isoformat()} is outside {TIME_FLOOR.date().isoformat()} .. "
                f"now + {int(self.skew.total_seconds())}s",
            )


def make_safe(event: Event, window: Window) -> Event:
    """`event` made safe for both stores and every consumer, or ParseError naming the field."""
    window.check(event.occurred_at)
    for name, limit in KEY_LIMITS.items():
        value = getattr(event, name)
        if value is not None and not is_safe_key(value, limit):
            raise ParseError(
                "unsafe_field",
                f"{name} is longer than {limit} characters or holds control characters",
            )
    for reference in event.references:
        if not is_safe_key(reference, REFERENCE_LIMIT):
            raise ParseError("unsafe_field", "a reference is not a digest")
    for name, number in (("size", event.size), ("http_status", event.http_status)):
        if number is not None and not 0 <= number <= (MAX_BIGINT if name == "size" else 999):
            raise ParseError("unsafe_field", f"{name} {number} is out of range")
    changes: dict[str, str] = {}
    for name, limit in TEXT_LIMITS.items():
        value = getattr(event, name)
        if value is None or (len(value) <= limit and value.isprintable()):
            continue
        safe = safe_text(value, limit)
        if safe != value:
            changes[name] = safe
    return dataclasses.replace(event, **changes) if changes else event  # type: ignore[arg-type]


def screen_lines(lines: list[str], max_chars: int) -> tuple[list[str], list[str]]:
    """`lines` split into those short enough to parse and those longer than `max_chars`.

    Parsing time grows with a line's length; a registry line is a few kB at most.
    """
    if not lines or max(map(len, lines)) <= max_chars:
        return lines, []
    short: list[str] = []
    long: list[str] = []
    for line in lines:
        (short if len(line) <= max_chars else long).append(line)
    return short, long


def screen_events(events: list[Event], window: Window) -> tuple[list[Event], list[Unsafe]]:
    """Each event made safe, or set aside with why."""
    safe: list[Event] = []
    unsafe: list[Unsafe] = []
    for event in events:
        try:
            safe.append(make_safe(event, window))
        except ParseError as exc:
            unsafe.append(Unsafe(event, exc.reason, exc.message))
    return safe, unsafe


@dataclasses.dataclass(frozen=True, slots=True)
class Unsafe:
    """An event that cannot be made safe, with the reason code and message."""

    event: Event
    reason: str
    message: str
