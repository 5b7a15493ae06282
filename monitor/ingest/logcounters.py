"""The counters log classification keeps for metrics (pure): lines by result and kind, auth
outcomes, and responses by status, status class and route kind. Every key is bounded."""

from __future__ import annotations

import dataclasses

from monitor.ingest.logline import LineKind
from monitor.ingest.routes import ROUTES

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_STATUS_CLASS = {int(name[0]): name for name in STATUS_CLASSES}


@dataclasses.dataclass
class LogCounters:
    """Plain counters for metrics; keys are bounded (results, kinds, statuses, route kinds)."""

    lines_by_result: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"parsed": 0, "ignored": 0, "malformed": 0}
    )
    lines_by_kind: dict[str, int] = dataclasses.field(
        default_factory=lambda: {kind.value: 0 for kind in LineKind}
    )
    auth_failures: int = 0
    anonymous_challenges: int = 0
    access_denied: int = 0
    unattributed_401: int = 0
    events_without_time: int = 0
    responses_by_status: dict[int, int] = dataclasses.field(default_factory=dict)
    responses_by_class: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(STATUS_CLASSES, 0)
    )
    responses_by_route: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(ROUTES, 0)
    )
    # (status class, route kind) pairs, for the registry_responses_total metric
    responses: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)

    def count_response(self, status: int, route: str, count: int = 1) -> None:
        """Count `count` responses of `status` on a route of kind `route`."""
        by_status = self.responses_by_status
        by_status[status] = by_status.get(status, 0) + count
        status_class = _STATUS_CLASS.get(status // 100)
        if status_class is not None:
            self.responses_by_class[status_class] += count
            key = (status_class, route)
            self.responses[key] = self.responses.get(key, 0) + count
        self.responses_by_route[route] += count
