"""`GET /v1/stats/daily`: events per UTC day, repository, action and client class, paged
(`limit`, `cursor`) in (day, repository, action, client) order."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from monitor.api.read import check_parameters, page_response, parse_limit, read_services
from monitor.errors import InvalidQuery
from monitor.store.cursors import decode_key, encode_key
from monitor.store.rollups import DailyCount, RollupKey, daily_counts

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
    check_parameters(params, {"since", "until", "repository", "limit", "cursor"})
    today = services.clock().date()
    until = _day(params.get("until"), "until", today + timedelta(days=1))
    since = _day(params.get("since"), "since", until - timedelta(days=30))
    if since >= until or (until - since).days > MAX_DAYS:
        raise InvalidQuery("invalid_range", f"since must be before until, at most {MAX_DAYS} days")
    repository = params.get("repository") or None
    limit = parse_limit(params)
    cursor = params.get("cursor") or None
    after = _after(cursor) if cursor else None

    def page(session: Session) -> tuple[list[DailyCount], str | None]:
        items = daily_counts(
            session, since=since, until=until, repository=repository, after=after, limit=limit + 1
        )
        if len(items) <= limit:
            return items, None
        last = items[limit - 1]
        return items[:limit], encode_key([last.day.isoformat(), *last.key[1:]])

    return await page_response(services, page)


def _after(cursor: str) -> RollupKey:
    day, repository, action, client = decode_key(cursor, 4)
    try:
        return date.fromisoformat(day), repository, action, client
    except ValueError:
        raise InvalidQuery("invalid_cursor", "cursor is not one this server issued") from None
