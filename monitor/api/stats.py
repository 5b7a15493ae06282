"""`GET /v1/stats/daily`: events per UTC day, repository, action and client class."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.api.read import query_store, read_services
from monitor.errors import InvalidQuery
from monitor.store.rollups import daily_counts

MAX_DAYS = 3660


def _day(text: str | None, name: str, default: date) -> date:
    if text is None or text == "":
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidQuery(f"invalid_{name}", f"{name} must be a day such as 2026-11-27") from None


async def daily(request: Request) -> Response:
    services = read_services(request)
    params = request.query_params
    today = datetime.now(UTC).date()
    until = _day(params.get("until"), "until", today + timedelta(days=1))
    since = _day(params.get("since"), "since", until - timedelta(days=30))
    if since >= until or (until - since).days > MAX_DAYS:
        raise InvalidQuery("invalid_range", f"since must be before until, at most {MAX_DAYS} days")
    repository = params.get("repository") or None
    items = await query_store(
        services,
        lambda s: daily_counts(s, since=since, until=until, repository=repository),
    )
    return JSONResponse({"items": [i.to_dict() for i in items]})
