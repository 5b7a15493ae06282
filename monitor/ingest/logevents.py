"""Events built from registry log lines, and their ids; pure."""

from __future__ import annotations

import hashlib
from datetime import datetime

from monitor.events import Action, Client, Event, Source, classify_client, host_of
from monitor.ingest import memo
from monitor.ingest.logline import ParsedLine
from monitor.ingest.routes import (
    reference_of,
    repository_of,
    route_of,
    split_reference,
    target_kind,
)


def client_of(user_agent: str | None) -> Client:
    """`classify_client`, memoised: a registry sees few distinct user agents."""
    client = memo.CLIENTS.get(user_agent)
    if client is None:
        client = memo.CLIENTS.remember(user_agent, classify_client(user_agent))
    return client


def event_id(key: str) -> str:
    """A log event id: `log:` and a digest of what identifies the event."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16)
    return "log:" + digest.hexdigest()


def request_event_id(request_id: str, action: Action) -> str:
    """The id of the event of one kind for one registry request."""
    return event_id(f"req\x00{request_id}\x00{action.value}")


def line_event_id(line: str, seen_before: int) -> str:
    """The id of an event from a line without request id, by its text and earlier copies."""
    return event_id(f"line\x00{line}\x00{seen_before}")


def app_event(
    parsed: ParsedLine,
    *,
    event_id: str,
    when: datetime,
    action: Action,
    status: int,
    actor: str | None,
    detail: str | None,
) -> Event:
    """The event of an app line (fields `http.request.*`, `vars.*`)."""
    fields = parsed.fields
    uri = fields.get("http.request.uri")
    route = route_of(uri)
    agent = fields.get("http.request.useragent") or None
    reference = fields.get("vars.reference") or (reference_of(uri) if route == "manifest" else None)
    tag, digest = split_reference(reference)
    return Event(
        event_id=event_id,
        source=Source.LOG,
        action=action,
        occurred_at=when,
        target_kind=target_kind(route),
        repository=fields.get("vars.name") or repository_of(uri),
        tag=tag,
        digest=digest or fields.get("vars.digest") or None,
        actor=actor,
        remote_ip=host_of(fields.get("http.request.remoteaddr")),
        user_agent=agent,
        http_method=fields.get("http.request.method") or None,
        http_status=status,
        request_id=fields.get("http.request.id"),
        request_uri=uri,
        client=client_of(agent),
        route=route,
        detail=detail,
    )


def access_event(parsed: ParsedLine, *, event_id: str, when: datetime, action: Action) -> Event:
    """The event of an access or proxy line; the actor is the proxy's `$remote_user`."""
    route = route_of(parsed.uri)
    tag, digest = split_reference(reference_of(parsed.uri) if route == "manifest" else None)
    return Event(
        event_id=event_id,
        source=Source.LOG,
        action=action,
        occurred_at=when,
        target_kind=target_kind(route),
        repository=repository_of(parsed.uri),
        tag=tag,
        digest=digest,
        actor=parsed.user,
        remote_ip=host_of(parsed.remote),
        user_agent=parsed.user_agent,
        http_method=parsed.method,
        http_status=parsed.status,
        request_uri=parsed.uri,
        client=client_of(parsed.user_agent),
        route=route,
    )
