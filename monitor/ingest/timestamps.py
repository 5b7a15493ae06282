"""The times of registry log lines, parsed fast; pure.

Two forms: RFC 3339 (logrus `time=`, JSON `time`/`@timestamp`) and the combined-log
`27/Nov/2026:04:52:05 +0000`. A log repeats the same seconds and minutes line after line, so both
parsers keep what they computed in the memo tables of `monitor.ingest.memo`: a second seen before
is a lookup, and a new second of a known minute is one `replace`. Anything else goes through the
full parse (for RFC 3339, `monitor.events.parse_timestamp`, the one parser the rest of the program
uses). Bad input gives None, never an exception.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from monitor.events import parse_timestamp
from monitor.ingest.memo import CLF_MINUTES, CLF_TIMES, RFC3339_MINUTES, RFC3339_SECONDS


def parse_rfc3339(text: str) -> datetime | None:
    """RFC 3339 with up to nanoseconds → aware UTC datetime; None when it is not one."""
    length = len(text)
    if length >= 20 and text[-1] in "Zz" and text[10] in "Tt " and text[4] == "-":
        head = text[:19]
        base = RFC3339_SECONDS.get(head)
        if base is None:
            base = _new_second(head)
            if base is None:
                return None
        if length == 20:
            return base
        if text[19] != "." or length == 21:
            return None
        fraction = text[20:-1]
        if not fraction.isascii() or not fraction.isdigit():
            return None
        return base.replace(microsecond=int(fraction[:6].ljust(6, "0")))
    try:
        return parse_timestamp(text)
    except ValueError:
        return None


def _new_second(head: str) -> datetime | None:
    """The time of `YYYY-MM-DDTHH:MM:SS` (memoised), from its minute when that was seen before."""
    minute_base = RFC3339_MINUTES.get(head[:16])
    seconds = head[17:]
    if (
        minute_base is not None
        and head[16] == ":"
        and seconds.isascii()
        and seconds.isdigit()
        and seconds < "60"
    ):
        base = minute_base.replace(second=int(seconds))
    else:
        match = _SECONDS.fullmatch(head)
        if match is None:
            return None
        try:
            year, month, day, hour, minute, second = map(int, match.groups())
            base = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            return None
        RFC3339_MINUTES.remember(head[:16], base.replace(second=0))
    return RFC3339_SECONDS.remember(head, base)


def is_rfc3339(text: str) -> bool:
    """Whether `parse_rfc3339(text)` gives a time; cheaper when the second was seen before."""
    length = len(text)
    if (
        length >= 20
        and text[-1] in "Zz"
        and text[4] == "-"
        and text[10] in "Tt "
        and text[:19] in RFC3339_SECONDS
    ):
        if length == 20:
            return True
        if text[19] != "." or length == 21:
            return False
        fraction = text[20:-1]
        return fraction.isascii() and fraction.isdigit()
    return parse_rfc3339(text) is not None


_SECONDS = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})", re.A)

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}


def parse_clf_time(text: str) -> datetime | None:
    """A combined-log time `27/Nov/2026:04:52:05 +0000` → aware UTC datetime; None if invalid."""
    cached = CLF_TIMES.get(text)
    if cached is not None:
        return cached
    if len(text) == 26 and text[17] == ":":
        minute_base = CLF_MINUTES.get(text[:17] + text[20:])
        seconds = text[18:20]
        if minute_base is not None and seconds.isascii() and seconds.isdigit() and seconds < "60":
            return CLF_TIMES.remember(text, minute_base + timedelta(seconds=int(seconds)))
    match = _CLF_TIME.fullmatch(text)
    if match is None:
        return None
    day, month_name, year, hour, minute, second, sign, zone_h, zone_m = match.groups()
    month = _MONTHS.get(month_name)
    if month is None:
        return None
    try:
        offset = timedelta(hours=int(zone_h), minutes=int(zone_m))
        zone = timezone(offset if sign == "+" else -offset)
        value = datetime(
            int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=zone
        ).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    CLF_MINUTES.remember(text[:17] + text[20:], value - timedelta(seconds=int(second)))
    return CLF_TIMES.remember(text, value)


_CLF_TIME = re.compile(
    r"(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})", re.A
)
