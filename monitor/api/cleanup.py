"""The cleanup read API: `GET /v1/cleanup/plans` (newest first) and `/v1/cleanup/plans/{id}`."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.api.read import _query, _services, parse_limit
from monitor.errors import InvalidQuery
from monitor.events import parse_timestamp
from monitor.store.cleanup_plans import list_plans, load_plan
from monitor.store.journal import list_journal


def encode_plan_cursor(created_at: str, plan_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([created_at, plan_id])).decode().rstrip("=")


def decode_plan_cursor(cursor: str) -> tuple[Any, str]:
    try:
        created_at, plan_id = orjson.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        )
        return parse_timestamp(str(created_at)), str(plan_id)
    except (ValueError, TypeError):
        raise InvalidQuery("invalid_cursor", "cursor is not one this API gave out") from None


async def plans(request: Request) -> Response:
    services = _services(request)
    params = request.query_params
    for name in params:
        if name not in ("limit", "cursor"):
            raise InvalidQuery("unknown_parameter", f"unknown query parameter {name!r}")
    limit = parse_limit(params, default=50)
    cursor = params.get("cursor")
    before = decode_plan_cursor(cursor) if cursor else None
    items = await _query(services, lambda s: list_plans(s, limit=limit, before=before))
    next_cursor = None
    if len(items) == limit:
        last = items[-1].to_dict()
        next_cursor = encode_plan_cursor(last["created_at"], last["id"])
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
