"""`GET /v1/alerts`: stored alerts, most recently seen first, with the read token rules."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.alerts import LISTED_FIELDS, AlertState, Mode, Severity
from monitor.api.read import check_parameters, parse_limit, parse_range, query_store, read_services
from monitor.errors import InvalidQuery
from monitor.store.alerts import AlertFilter, query_alerts

_CHOICES = {
    "state": [s.value for s in AlertState],
    "severity": [s.value for s in Severity],
    "mode": [m.value for m in Mode if m is not Mode.OFF],
}


def parse_alert_filter(params: Mapping[str, str]) -> AlertFilter:
    """Query parameters → AlertFilter; InvalidQuery names the bad parameter."""
    known = {"rule", "state", "severity", "mode", "since", "until", "limit", "cursor"}
    check_parameters(params, known)
    for name, choices in _CHOICES.items():
        value = params.get(name)
        if value is not None and value not in choices:
            raise InvalidQuery(f"invalid_{name}", f"{name} must be one of {choices}")
    since, until = parse_range(params)
    return AlertFilter(
        rule=params.get("rule") or None,
        state=params.get("state"),
        severity=params.get("severity"),
        mode=params.get("mode"),
        since=since,
        until=until,
    )


async def alerts(request: Request) -> Response:
    services = read_services(request)
    params = request.query_params
    where = parse_alert_filter(params)
    limit = parse_limit(params)
    cursor = params.get("cursor") or None
    page, next_cursor = await query_store(
        services, lambda s: query_alerts(s, where=where, limit=limit, cursor=cursor)
    )
    return JSONResponse(
        {"items": [a.to_dict(LISTED_FIELDS) for a in page], "next_cursor": next_cursor}
    )
