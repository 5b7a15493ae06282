"""The registry's notification queue counters, bridged from expvar to Prometheus.

Distribution 2.8 (`registry:2`, Debian's `docker-registry`) keeps them only in expvar, at its
debug listener's `/debug/vars`: `registry.notifications.endpoints[]` with `name` and
`Metrics {Pending, Events, Successes, Failures, Errors, Statuses {"200 OK": n}}`. The
collector reads that page when Prometheus scrapes and exports it under
`registry_monitor_registry_*`. A registry that does not answer, or answers something else,
gives `registry_monitor_registry_debug_up 0` and no other sample; the scrape never fails.

Only `name` and `Metrics` are read: the same objects also carry the endpoint's URL and headers
(its bearer token), which are never logged or exported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import orjson
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.errors import ParseError

log = structlog.get_logger("monitor.observability.registry_debug")

PREFIX = "registry_monitor_registry_"
VARS_PATH = "/debug/vars"
EVENT_TYPES = ("events", "successes", "failures", "errors")
MAX_NAME_LENGTH = 64


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointQueue:
    """One notification endpoint's queue, as the registry counts it since it started."""

    name: str
    pending: int
    events: int
    successes: int
    failures: int
    errors: int
    statuses: Mapping[str, int]

    def counts(self) -> dict[str, int]:
        """Counter value per `type` label."""
        return {
            "events": self.events,
            "successes": self.successes,
            "failures": self.failures,
            "errors": self.errors,
        }


def status_code(status: str) -> str:
    """The numeric code of an expvar status key (`"503 Service Unavailable"` → `"503"`)."""
    code = status.split(" ", 1)[0]
    return code if len(code) == 3 and code.isdigit() else "other"


def _count(metrics: Mapping[str, Any], key: str) -> int:
    value = metrics.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParseError("invalid_debug_vars", f"Metrics.{key} is not a count: {value!r}")
    return value


def parse_debug_vars(body: bytes, *, max_endpoints: int = 16) -> tuple[EndpointQueue, ...]:
    """The endpoints of a `/debug/vars` body, in the registry's order, at most `max_endpoints`.

    A registry without notification endpoints gives `()`; a body that is not the expvar
    document raises ParseError.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError("invalid_json", f"/debug/vars is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ParseError("invalid_debug_vars", "/debug/vars is not a JSON object")
    registry = document.get("registry")
    notifications = registry.get("notifications") if isinstance(registry, dict) else None
    if not isinstance(notifications, dict):
        return ()
    endpoints = notifications.get("endpoints") or []
    if not isinstance(endpoints, list):
        raise ParseError("invalid_debug_vars", "registry.notifications.endpoints is not a list")
    parsed: dict[str, EndpointQueue] = {}
    for endpoint in endpoints:
        if len(parsed) >= max_endpoints:
            break
        if not isinstance(endpoint, dict) or not isinstance(endpoint.get("Metrics"), dict):
            raise ParseError("invalid_debug_vars", "an endpoint has no Metrics object")
        name = str(endpoint.get("name") or "")[:MAX_NAME_LENGTH]
        metrics = endpoint["Metrics"]
        raw_statuses = metrics.get("Statuses")
        raw_statuses = {} if raw_statuses is None else raw_statuses
        if not isinstance(raw_statuses, dict):
            raise ParseError("invalid_debug_vars", "Metrics.Statuses is not an object")
        statuses: dict[str, int] = {}
        for status in raw_statuses:
            code = status_code(str(status))
            statuses[code] = statuses.get(code, 0) + _count(raw_statuses, status)
        if name in parsed:
            continue
        parsed[name] = EndpointQueue(
            name=name,
            pending=_count(metrics, "Pending"),
            events=_count(metrics, "Events"),
            successes=_count(metrics, "Successes"),
            failures=_count(metrics, "Failures"),
            errors=_count(metrics, "Errors"),
            statuses=statuses,
        )
    return tuple(parsed.values())


def families(endpoints: tuple[EndpointQueue, ...] | None) -> list[Metric]:
    """The exported families; `None` means the registry did not answer usably (then the queue
    families carry no sample, so their names still show on /metrics)."""
    up = GaugeMetricFamily(
        f"{PREFIX}debug_up",
        "1 when the registry's /debug/vars answered at the last scrape, else 0.",
        value=0 if endpoints is None else 1,
    )
    pending = GaugeMetricFamily(
        f"{PREFIX}notifications_pending",
        "Events in the registry's in-memory notification queue, by endpoint (/debug/vars).",
        labels=["endpoint"],
    )
    events = CounterMetricFamily(
        f"{PREFIX}notifications_events",
        "Notification counters of the registry by endpoint and type: events queued, "
        "successes, failures (non-2xx answers), errors (no answer) (/debug/vars).",
        labels=["endpoint", "type"],
    )
    status = CounterMetricFamily(
        f"{PREFIX}notifications_status",
        "Answers of each notification endpoint by HTTP status code (/debug/vars).",
        labels=["endpoint", "code"],
    )
    for endpoint in endpoints or ():
        pending.add_metric([endpoint.name], endpoint.pending)
        for kind, value in endpoint.counts().items():
            events.add_metric([endpoint.name, kind], value)
        for code, value in sorted(endpoint.statuses.items()):
            status.add_metric([endpoint.name, code], value)
    return [up, pending, events, status]


class RegistryDebugCollector(Collector):
    """Reads `<debug_url>/debug/vars` with `client` at every scrape."""

    def __init__(self, client: httpx.Client, debug_url: str, *, max_endpoints: int = 16) -> None:
        self._client = client
        self._url = debug_url.rstrip("/") + VARS_PATH
        self._max_endpoints = max_endpoints

    def describe(self) -> list[Metric]:
        return []

    def read(self) -> tuple[EndpointQueue, ...] | None:
        """The endpoints now, or None when the registry does not answer usably."""
        try:
            response = self._client.get(self._url)
            response.raise_for_status()
            return parse_debug_vars(response.content, max_endpoints=self._max_endpoints)
        except (httpx.HTTPError, ParseError) as exc:
            log.warning("registry /debug/vars unavailable", error=type(exc).__name__)
            return None

    def collect(self) -> Iterator[Metric]:
        yield from families(self.read())
