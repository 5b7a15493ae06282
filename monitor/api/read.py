"""The read API: `GET /v1/events`, `/v1/tags`, `/v1/registry/starts`, `/v1/quarantine`.

Every list pages with `limit` and an opaque `cursor`; the store is read and the JSON built on a
worker thread, never on the event loop that answers intake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import orjson
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.api.auth import require_token
from monitor.api.params import check_parameters_safe
from monitor.errors import InvalidQuery, StoreUnavailable
from monitor.events import Action, Source, parse_timestamp
from monitor.runtime import ReadContext
from monitor.store.cursors import decode_key, encode_key
from monitor.store.events import EventFilter, query_events
from monitor.store.failures import is_outage
from monitor.store.quarantine import list_quarantined
from monitor.store.requestlog import list_registry_starts
from monitor.store.tags import TagState, list_tags

T = TypeVar("T")


class Item(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


MAX_LIMIT = 1000


def _services(request: Request) -> ReadContext:
    services: ReadContext = request.app.state.services
    token = services.settings.api.token
    require_token(request, [token] if token else [], what="the read API")
    check_parameters_safe(request.query_params, request.path_params)
    return services


def read_services(request: Request) -> ReadContext:
    """The services, once the request passed the read API's token check."""
    return _services(request)


async def query_store(services: ReadContext, work: Callable[[Session], T]) -> T:
    """Run `work` in a session on a worker thread; a store failure becomes StoreUnavailable."""
    return await _query(services, work)


async def _query(services: ReadContext, work: Callable[[Session], T]) -> T:
    def run() -> T:
        try:
            with services.session_factory() as session:
                return work(session)
        except SQLAlchemyError as exc:
            if not is_outage(exc):
                # Not the store's state but a value it will not compare: the query is at fault.
                raise InvalidQuery(
                    "invalid_query", "a parameter holds a value the store cannot compare"
                ) from exc
            services.metrics.store_errors.labels(operation="query").inc()
            raise StoreUnavailable("the store cannot answer right now") from exc

    return await run_in_threadpool(run)


def parse_limit(params: Mapping[str, str], default: int = 100) -> int:
    text = params.get("limit")
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidQuery("invalid_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def parse_time(params: Mapping[str, str], name: str) -> datetime | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        raise InvalidQuery(
            f"invalid_{name}", f"{name} must be an RFC 3339 time such as 2026-11-27T04:52:00Z"
        ) from None


def parse_range(params: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    """`since` and `until` (RFC 3339, either may be missing); InvalidQuery when since > until."""
    since, until = parse_time(params, "since"), parse_time(params, "until")
    if since is not None and until is not None and since > until:
        raise InvalidQuery("invalid_range", "since is after until")
    return since, until


def parse_event_filter(params: Mapping[str, str]) -> EventFilter:
    """Query parameters → EventFilter; InvalidQuery names the bad parameter."""
    known = {"action", "repository", "tag", "actor", "remote_ip", "source", "since", "until"}
    check_parameters(params, known | {"reconstructed", "limit", "cursor", "order"})
    action = params.get("action")
    if action is not None and action not in {a.value for a in Action}:
        raise InvalidQuery("invalid_action", f"action must be one of {[a.value for a in Action]}")
    source = params.get("source")
    if source is not None and source not in {s.value for s in Source}:
        raise InvalidQuery("invalid_source", "source must be notification or log")
    since, until = parse_range(params)
    reconstructed = params.get("reconstructed")
    if reconstructed is not None and reconstructed not in ("true", "false"):
        raise InvalidQuery("invalid_reconstructed", "reconstructed must be true or false")
    return EventFilter(
        reconstructed=None if reconstructed is None else reconstructed == "true",
        action=action,
        repository=params.get("repository"),
        tag=params.get("tag"),
        actor=params.get("actor"),
        remote_ip=params.get("remote_ip"),
        source=source,
        since=since,
        until=until,
    )


async def events(request: Request) -> Response:
    services = _services(request)
    params = request.query_params
    where = parse_event_filter(params)
    limit = parse_limit(params)
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidQuery("invalid_order", "order must be asc or desc")
    cursor = params.get("cursor") or None
    return await page_response(
        services,
        lambda s: query_events(
            s, where=where, limit=limit, cursor=cursor, ascending=order == "asc"
        ),
    )


async def page_response(
    services: ReadContext, work: Callable[[Session], tuple[Sequence[Item], str | None]]
) -> Response:
    """`{"items", "next_cursor"}` of the page `work` reads, built into JSON on the worker
    thread too, so the event loop only sends bytes."""

    def run(session: Session) -> bytes:
        items, next_cursor = work(session)
        return orjson.dumps({"items": [i.to_dict() for i in items], "next_cursor": next_cursor})

    return Response(await _query(services, run), media_type="application/json")


def check_parameters(params: Mapping[str, str], known: set[str]) -> None:
    for name in params:
        if name not in known:
            raise InvalidQuery("unknown_parameter", f"unknown query parameter {name!r}")


async def tags(request: Request) -> Response:
    services = _services(request)
    params = request.query_params
    check_parameters(params, {"repository", "deleted", "limit", "cursor"})
    repository = params.get("repository") or None
    include_deleted = params.get("deleted", "true").lower() not in ("false", "0", "no")
    limit = parse_limit(params)
    cursor = params.get("cursor") or None
    after = decode_key(cursor, 2) if cursor else None

    def page(session: Session) -> tuple[list[TagState], str | None]:
        items = list_tags(
            session,
            repository=repository,
            include_deleted=include_deleted,
            after=(after[0], after[1]) if after else None,
            limit=limit + 1,
        )
        if len(items) <= limit:
            return items, None
        last = items[limit - 1]
        return items[:limit], encode_key([last.repository, last.tag])

    return await page_response(services, page)


async def registry_starts(request: Request) -> Response:
    services = _services(request)
    params = request.query_params
    check_parameters(params, {"limit", "cursor"})
    limit = parse_limit(params)
    cursor = params.get("cursor") or None
    return await page_response(
        services, lambda s: list_registry_starts(s, limit=limit, cursor=cursor)
    )


async def quarantine(request: Request) -> Response:
    services = _services(request)
    params = request.query_params
    limit = parse_limit(params)
    before = params.get("before")
    if before is not None and not before.isdigit():
        raise InvalidQuery("invalid_before", "before must be a quarantine id")
    items = await _query(
        services,
        lambda s: list_quarantined(s, limit=limit, before_id=int(before) if before else None),
    )
    body: dict[str, Any] = {"items": [q.to_dict() for q in items]}
    body["next_before"] = items[-1].id if len(items) == limit else None
    return JSONResponse(body)
