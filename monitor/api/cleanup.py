"""The cleanup read API: `GET /v1/cleanup/plans` (newest first), `/v1/cleanup/plans/{id}` (its
summary and the first page of its decisions, actions and journal), and the pages of each:
`/v1/cleanup/plans/{id}/decisions`, `/actions` and `/journal`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.api.read import _query, _services, check_parameters, parse_limit
from monitor.cleanup.plan import action_dict, decision_dict
from monitor.cleanup.plan_pages import PlanPages
from monitor.errors import InvalidQuery
from monitor.ingest.boundary import MAX_BIGINT
from monitor.store.cleanup_plans import plan_pages, query_plans, require_plan
from monitor.store.cursors import decode_key, encode_key
from monitor.store.journal import journal_page

PART_LIMIT = 100
"""Items of each part a page holds unless `limit` asks otherwise."""

Page = tuple[list[dict[str, Any]], str | None]


async def plans(request: Request) -> Response:
    services = _services(request)
    params = request.query_params
    check_parameters(params, {"limit", "cursor"})
    limit = parse_limit(params, default=50)
    cursor = params.get("cursor") or None
    items, next_cursor = await _query(
        services, lambda s: query_plans(s, limit=limit, cursor=cursor)
    )
    return JSONResponse({"items": [p.to_dict() for p in items], "next_cursor": next_cursor})


def _position(part: str, cursor: str | None) -> int:
    """Where a page of `part` starts: the position its cursor names, 0 without one."""
    if not cursor:
        return 0
    named, text = decode_key(cursor, 2)
    if named != part or not text.isascii() or not text.isdigit() or int(text) > MAX_BIGINT:
        raise InvalidQuery("invalid_cursor", "cursor is not one this server issued")
    return int(text)


def _cursor(part: str, position: int | None) -> str | None:
    return None if position is None else encode_key([part, str(position)])


def _decisions(pages: PlanPages, start: int, limit: int) -> Page:
    found = pages.decisions(start, limit)
    end = start + len(found)
    more = bool(found) and end < pages.decision_count
    return [decision_dict(d) for d in found], _cursor("decisions", end if more else None)


def _actions(pages: PlanPages, start: int, limit: int) -> Page:
    found = pages.actions(start, limit)
    end = start + len(found)
    more = bool(found) and end < pages.action_count
    return [action_dict(a) for a in found], _cursor("actions", end if more else None)


def _journal(session: Any, plan_id: str, after: int, limit: int) -> Page:
    rows, last = journal_page(session, plan_id=plan_id, limit=limit, after=after)
    return [row.to_dict() for row in rows], _cursor("journal", last)


async def plan(request: Request) -> Response:
    """The plan's summary and the first `limit` (100) of its decisions, actions and journal
    rows, with the cursor of each part's next page in `next_cursors`; `actions` being the
    first page, the summary's count of them is `action_count`."""
    services = _services(request)
    check_parameters(request.query_params, {"limit"})
    limit = parse_limit(request.query_params, default=PART_LIMIT)
    plan_id = request.path_params["plan_id"]

    def work(session: Any) -> dict[str, Any]:
        summary, pages = plan_pages(session, plan_id)
        body = summary.to_dict()
        body["action_count"] = summary.actions
        cursors: dict[str, str | None] = {}
        body["decisions"], cursors["decisions"] = _decisions(pages, 0, limit)
        body["actions"], cursors["actions"] = _actions(pages, 0, limit)
        body["journal"], cursors["journal"] = _journal(session, plan_id, 0, limit)
        body["next_cursors"] = cursors
        return body

    return JSONResponse(await _query(services, work))


PageOf = Callable[[Any, str, int, int], Page]
"""A part's page: (session, plan id, start, limit) to its items and next cursor."""


async def _part(request: Request, part: str, page: PageOf) -> Response:
    services = _services(request)
    params = request.query_params
    check_parameters(params, {"limit", "cursor"})
    limit = parse_limit(params, default=PART_LIMIT)
    start = _position(part, params.get("cursor"))
    plan_id = request.path_params["plan_id"]
    items, next_cursor = await _query(services, lambda s: page(s, plan_id, start, limit))
    return JSONResponse({"items": items, "next_cursor": next_cursor})


async def plan_decisions(request: Request) -> Response:
    """A page of the plan's decisions, in stored order (repositories as they first appear,
    tags in order within each)."""
    return await _part(
        request, "decisions", lambda s, i, start, n: _decisions(plan_pages(s, i)[1], start, n)
    )


async def plan_actions(request: Request) -> Response:
    """A page of the plan's actions, in the order apply takes them."""
    return await _part(
        request, "actions", lambda s, i, start, n: _actions(plan_pages(s, i)[1], start, n)
    )


async def plan_journal(request: Request) -> Response:
    """A page of the plan's journal, in the order it was written; 404 for an unknown plan."""

    def page(session: Any, plan_id: str, after: int, limit: int) -> Page:
        require_plan(session, plan_id)
        return _journal(session, plan_id, after, limit)

    return await _part(request, "journal", page)
