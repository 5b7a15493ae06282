"""The memo tables of the pure ingest functions, in one place with their bounds.

Each table maps an input seen before to what its function computed for it, so a value is always
what the function would return. A registry's logs repeat a few user agents, URIs, messages and
(for a while) the same minutes, so most lookups hit. When a table reaches its bound it is emptied
and fills again: memory stays bounded whatever the input, and correctness never depends on a hit.

The hot loops read a table with `table.get(key)` or `key in table` (plain dict speed) and add to
it only through `remember`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from monitor.events import Client

K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    """A dict that empties itself before it would hold more than `bound` entries."""

    __slots__ = ("bound",)

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound = bound

    def remember(self, key: K, value: V) -> V:
        """Store `value` for `key` (emptying the table first when it is full); returns `value`."""
        if len(self) >= self.bound:
            self.clear()
        self[key] = value
        return value


RFC3339_SECONDS: Memo[str, datetime] = Memo(4096)
"""`YYYY-MM-DDTHH:MM:SS` → that second, UTC (`timestamps.parse_rfc3339`)."""
RFC3339_MINUTES: Memo[str, datetime] = Memo(4096)
"""`YYYY-MM-DDTHH:MM` → that minute at second 0, UTC: a new second of a known minute is cheap."""
CLF_TIMES: Memo[str, datetime] = Memo(4096)
"""`27/Nov/2026:04:52:05 +0000` → that time, UTC (`timestamps.parse_clf_time`)."""
CLF_MINUTES: Memo[str, datetime] = Memo(4096)
"""`DD/Mon/YYYY:HH:MM` + ` ±hhmm` → that minute at second 0, UTC."""
ROUTES: Memo[str, str] = Memo(4096)
"""Request URI → its route kind (`routes.route_of`)."""
MSG_CATEGORIES: Memo[str, int] = Memo(4096)
"""App-line message → what the triage shortcut may do with it (`logtriage.categorise`)."""
CLIENTS: Memo[str | None, Client] = Memo(1024)
"""User agent → client class (`logevents.client_of`)."""
