"""The cleanup read API: `GET /v1/cleanup/plans` (newest first) and `/v1/cleanup/plans/{id}`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.api.read import _query, _services, check_parameters, parse_limit
from monitor.store.cleanup_plans import load_plan, query_plans
from monitor.store.journal import list_journal


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


async def plan(request: Request) -> Response:
    services = _services(request)
    plan_id = request.path_params["plan_id"]

    def work(session: Any) -> dict[str, Any]:
        summary, stored = load_plan(session, plan_id)
        body = summary.to_dict()
        data = stored.to_dict()
        body["decisions"] = data["decisions"]
        body["actions"] = data["actions"]
        body["journal"] = [row.to_dict() for row in list_journal(session, plan_id=plan_id)]
        return body

    return JSONResponse(await _query(services, work))
