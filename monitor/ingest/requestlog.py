"""Registry requests that produce notification events, read from `response completed` lines; pure.

The registry sends one notification per event it emits, each carrying the request's id; its app
log writes one `response completed` line per request with the same `http.request.id`. A
`RequestRecord` is what that line says about a successful request that emits events, and
`expected_events` the events the registry sent for it, as far as the log tells them:

- manifest GET/HEAD 200 → pull, PUT 201 → push (tag or digest as the URI names it);
- manifest DELETE 202 → delete (a delete by digest also deletes every tag on that digest: the
  caller passes those tags, from the per-tag state; a delete by tag on 3.x deletes that tag);
- blob GET/HEAD 200 → pull; the PUT completing an upload (201, `digest=` in the query) → push;
- a cross-repository mount (POST 201 with `mount=` and `from=`) → mount.

Not in the log, so never reconstructed: media type, size and the digest of a manifest pushed by
tag (a manifest pulled by tag gets the digest the tag's stored history shows it on, when that
is known), the user on 2.8 (its response lines carry no `auth.user.name`), and the config blob pull
2.8 adds when it rewrites a schema2 manifest to schema1 for an old client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from monitor.errors import ParseError
from monitor.events import Action, Event, Source, TargetKind, host_of, json_fields
from monitor.ingest.boundary import Window, make_safe
from monitor.ingest.logevents import client_of, event_id
from monitor.ingest.routes import reference_of, repository_of, route_of, split_reference

# (method, route, status) → the action of the request's main event
_EMITS: dict[tuple[str, str, int], Action] = {
    ("GET", "manifest", 200): Action.PULL,
    ("HEAD", "manifest", 200): Action.PULL,
    ("PUT", "manifest", 201): Action.PUSH,
    ("DELETE", "manifest", 202): Action.DELETE,
    ("GET", "blob", 200): Action.PULL,
    ("HEAD", "blob", 200): Action.PULL,
    ("PUT", "upload", 201): Action.PUSH,
    ("POST", "upload", 201): Action.MOUNT,
}


@dataclasses.dataclass(frozen=True, slots=True)
class RequestRecord:
    """One successful registry request that emits events, as its log line tells it."""

    request_id: str
    occurred_at: datetime
    action: Action
    target_kind: TargetKind
    repository: str
    http_method: str
    http_status: int
    tag: str | None = None
    digest: str | None = None
    from_repository: str | None = None
    actor: str | None = None
    remote_ip: str | None = None
    user_agent: str | None = None
    request_uri: str | None = None
    instance: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RegistryStart:
    """A registry process starting (its `listening on` line): its instance id, time, version."""

    instance: str
    started_at: datetime
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_fields(self)


def _query(uri: str) -> dict[str, list[str]]:
    index = uri.find("?")
    return parse_qs(uri[index + 1 :]) if index >= 0 else {}


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def record_of(fields: Mapping[str, str], when: datetime) -> RequestRecord | None:
    """The record of a `response completed` line's fields, or None when it emits no event."""
    request_id = fields.get("http.request.id")
    uri = fields.get("http.request.uri")
    method = (fields.get("http.request.method") or "").upper()
    status_text = fields.get("http.response.status") or ""
    if not request_id or not uri or not status_text.isdigit() or len(status_text) != 3:
        return None
    status = int(status_text)
    route = route_of(uri)
    action = _EMITS.get((method, route, status))
    if action is None:
        return None
    repository = fields.get("vars.name") or repository_of(uri)
    if not repository:
        return None
    tag: str | None = None
    digest: str | None = None
    from_repository: str | None = None
    kind = TargetKind.BLOB
    if route == "manifest":
        kind = TargetKind.MANIFEST
        tag, digest = split_reference(fields.get("vars.reference") or reference_of(uri))
        if tag is None and digest is None:
            return None
    elif route == "blob":
        digest = fields.get("vars.digest") or uri.split("?", 1)[0].rpartition("/")[2] or None
    else:
        query = _query(uri)
        if action is Action.MOUNT:
            digest = _first(query, "mount")
            from_repository = _first(query, "from")
            if from_repository is None:
                return None
        else:
            digest = _first(query, "digest")
    if route != "manifest" and not digest:
        return None
    agent = fields.get("http.request.useragent") or None
    return RequestRecord(
        request_id=request_id,
        occurred_at=when,
        action=action,
        target_kind=kind,
        repository=repository,
        http_method=method,
        http_status=status,
        tag=tag,
        digest=digest,
        from_repository=from_repository,
        actor=fields.get("auth.user.name") or None,
        remote_ip=host_of(fields.get("http.request.remoteaddr")),
        user_agent=agent,
        request_uri=uri,
        instance=fields.get("instance.id") or None,
    )


def match_key(action: Action, tag: str | None, digest: str | None) -> tuple[str, str]:
    """What tells the events of one request apart: the action and the tag, else the digest."""
    return action.value, f"tag:{tag}" if tag else f"digest:{digest or ''}"


def event_match_key(event: Event) -> tuple[str, str]:
    """`match_key` of a stored or notified event."""
    tag = event.tag if event.target_kind in (TargetKind.MANIFEST, TargetKind.TAG) else None
    if event.action is Action.DELETE and event.target_kind is TargetKind.MANIFEST and event.digest:
        tag = None  # a delete by digest names the manifest; its tags come as their own events
    return match_key(event.action, tag, event.digest)


def reconstructed_event_id(request_id: str, key: tuple[str, str]) -> str:
    """A stable id: reconstructing the same request twice gives the same event."""
    return event_id(f"reconstructed\x00{request_id}\x00{key[0]}\x00{key[1]}")


def expected_events(
    record: RequestRecord, *, tags_on_digest: Iterable[str] = (), tag_digest: str | None = None
) -> list[Event]:
    """The events the registry sent for `record`; `tags_on_digest` are the tags a delete by
    digest removed, `tag_digest` the digest a manifest pulled by tag was on, when known
    (each ignored for anything else)."""
    digest = record.digest
    if record.action is Action.PULL and record.tag is not None and digest is None:
        digest = tag_digest
    targets: list[tuple[TargetKind, str | None, str | None]] = [
        (record.target_kind, record.tag, digest)
    ]
    if record.action is Action.DELETE:
        if record.tag is not None:
            targets = [(TargetKind.TAG, record.tag, None)]
        else:
            targets += [(TargetKind.TAG, tag, None) for tag in sorted(set(tags_on_digest))]
    events = []
    for kind, tag, digest in targets:
        key = match_key(record.action, tag, digest)
        events.append(
            Event(
                event_id=reconstructed_event_id(record.request_id, key),
                source=Source.LOG,
                action=record.action,
                occurred_at=record.occurred_at,
                target_kind=kind,
                repository=record.repository,
                tag=tag,
                digest=digest,
                from_repository=record.from_repository,
                actor=record.actor,
                remote_ip=record.remote_ip,
                user_agent=record.user_agent,
                http_method=record.http_method,
                http_status=record.http_status,
                request_id=record.request_id,
                request_uri=record.request_uri,
                client=client_of(record.user_agent),
                route=kind.value if kind in (TargetKind.MANIFEST, TargetKind.BLOB) else None,
                instance=record.instance,
                reconstructed=True,
            )
        )
    return events


def missing_events(
    record: RequestRecord,
    notified: Iterable[Event],
    *,
    tags_on_digest: Iterable[str] = (),
    tag_digest: str | None = None,
) -> list[Event]:
    """The expected events of `record` that no notification of its request delivered."""
    seen = {event_match_key(event) for event in notified}
    expected = expected_events(record, tags_on_digest=tags_on_digest, tag_digest=tag_digest)
    return [event for event in expected if event_match_key(event) not in seen]


def pushes_to_resolve(
    events: Iterable[Event], newest_writes: Mapping[tuple[str, str], str]
) -> list[Event]:
    """The rebuilt manifest pushes by tag whose digest the registry can still tell: no digest
    yet, and their request is the newest logged PUT or DELETE of that repository:tag
    (`newest_writes`: (repository, tag) → request id), so the tag still points at what it
    stored."""
    return [
        e
        for e in events
        if e.action is Action.PUSH
        and e.target_kind is TargetKind.MANIFEST
        and e.digest is None
        and e.repository is not None
        and e.tag is not None
        and e.request_id is not None
        and newest_writes.get((e.repository, e.tag)) == e.request_id
    ]


def make_safe_record(record: RequestRecord, window: Window) -> RequestRecord:
    """`record` with every field made safe by the input boundary (as its events would be);
    `ParseError` when it cannot be (then its line's events, if any, were screened alone)."""
    safe = make_safe(expected_events(record)[0], window)
    if safe.request_id != record.request_id:
        raise ParseError("unsafe_field", "the request id is not safe to match on")
    return dataclasses.replace(
        record,
        repository=safe.repository or record.repository,
        actor=safe.actor,
        remote_ip=safe.remote_ip,
        user_agent=safe.user_agent,
        request_uri=safe.request_uri,
        instance=safe.instance,
        http_method=safe.http_method or record.http_method,
    )


def screen_records(records: Iterable[RequestRecord], window: Window) -> list[RequestRecord]:
    """The records that are safe to keep (made safe); the others are left out: they only
    matter for a lost notification, and their lines' own events went through the boundary."""
    kept = []
    for record in records:
        try:
            kept.append(make_safe_record(record, window))
        except ParseError:
            continue
    return kept
