"""Registry notification envelopes → normalized events. Pure: bytes in, events out.

An envelope is `{"events": [...]}`; 2.8 sends `…events.v1+json`, 3.x `…events.v2+json`.
Keys are read by name, never by position. Each event that cannot be used is returned as a
`Rejected` item with a stable reason code so the caller can quarantine it; the rest of the
envelope is still accepted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from monitor.errors import ParseError
from monitor.events import (
    MANIFEST_MEDIA_TYPES,
    Action,
    Event,
    Source,
    TargetKind,
    classify_client,
    host_of,
    parse_timestamp,
)
from monitor.ingest.boundary import MAX_BIGINT, Window, make_safe, safe_text

MEDIA_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
        "application/json",
    }
)

BLOB_MEDIA_TYPE = "application/octet-stream"
MAX_FIELD_CHARS = 4096
# The registry's own limits (distribution's reference grammar); the store's keys rely on them.
MAX_LENGTHS = {"id": 255, "repository": 255, "fromRepository": 255, "tag": 128, "digest": 160}
OBJECTS_PER_EVENT = 16  # an event holds about 6 (target, request, actor, source, references)
_ACTIONS = {a.value: a for a in (Action.PUSH, Action.PULL, Action.DELETE, Action.MOUNT)}


@dataclasses.dataclass(frozen=True, slots=True)
class Rejected:
    """Part of a body that cannot become an event, with why; `index` in `events[]`, or None
    when the whole body is unusable."""

    reason: str
    message: str
    index: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    events: tuple[Event, ...]
    rejected: tuple[Rejected, ...]
    total: int = 0  # items in `events[]`

    @property
    def rejected_count(self) -> int:
        """Items rejected: every item when the body was refused whole, at least 1."""
        if len(self.rejected) == 1 and self.rejected[0].index is None:
            return max(self.total, 1)
        return len(self.rejected)


def media_type_of(content_type: str | None) -> str:
    """`application/json; charset=utf-8` → `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_envelope(
    body: bytes,
    content_type: str | None,
    *,
    window: Window | None = None,
    max_events: int = 1000,
) -> Envelope:
    """Every event in `body`, each made safe by the input boundary; unusable parts come back in
    `rejected`, never as an exception. Without `window`, only times before `TIME_FLOOR` are out.

    Work is bounded: orjson refuses nesting deeper than 1024, and a list longer than
    `max_events` is rejected whole before any item is looked at.
    """
    media_type = media_type_of(content_type)
    if media_type not in MEDIA_TYPES:
        return _reject_all(
            "unsupported_media_type",
            f"content type {safe_text(media_type, 80) or '(none)'!r} is not a registry "
            "notification type",
        )
    objects = body.count(b"{")
    if objects > OBJECTS_PER_EVENT * max_events:
        # Refused before decoding: a megabyte of `{}` would otherwise become 350,000 objects.
        return _reject_all(
            "too_many_events",
            f"{objects} JSON objects, more than {max_events} events can hold",
        )
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _reject_all("invalid_json", f"body is not JSON: {safe_text(str(exc), 200)}")
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        return _reject_all("invalid_envelope", "body is not an object with an events list")
    items: list[Any] = document["events"]
    if not items:
        return _reject_all("invalid_envelope", "events list is empty")
    if len(items) > max_events:
        return Envelope(
            (),
            (Rejected("too_many_events", f"{len(items)} events, more than {max_events}"),),
            len(items),
        )
    bounds = window or _NO_UPPER_BOUND
    events: list[Event] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        try:
            events.append(make_safe(parse_event(item), bounds))
        except ParseError as exc:
            rejected.append(Rejected(exc.reason, exc.message, index))
    return Envelope(tuple(events), tuple(rejected), len(items))


_NO_UPPER_BOUND = Window(datetime.max.replace(tzinfo=UTC), timedelta(0))


def _reject_all(reason: str, message: str) -> Envelope:
    return Envelope((), (Rejected(reason, message),))


def describe_rejected(envelope: Envelope, *, most: int = 10) -> tuple[str, str]:
    """One reason and one message for everything `envelope` rejected (one quarantine row)."""
    reasons = sorted({r.reason for r in envelope.rejected})
    reason = reasons[0] if len(reasons) == 1 else "several"
    parts = [
        (f"event {r.index}: " if r.index is not None else "") + f"{r.reason}: {r.message}"
        for r in envelope.rejected[:most]
    ]
    if len(envelope.rejected) > most:
        parts.append(f"… and {len(envelope.rejected) - most} more")
    if envelope.total:
        parts.insert(0, f"{len(envelope.rejected)} of {envelope.total} events")
    return reason, "; ".join(parts)


def _text(obj: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise ParseError("missing_field", f"{where}.{key} is missing")
        return None
    if not isinstance(value, str):
        raise ParseError("invalid_field", f"{where}.{key} must be a string")
    limit = (
        MAX_LENGTHS.get(key, MAX_FIELD_CHARS) if where in ("event", "target") else MAX_FIELD_CHARS
    )
    if len(value) > limit:
        raise ParseError("invalid_field", f"{where}.{key} is longer than {limit} characters")
    return value


def _object(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParseError("invalid_field", f"{key} must be an object")
    return value


def _size(target: Mapping[str, Any]) -> int | None:
    for key in ("size", "length"):
        value = target.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BIGINT:
            raise ParseError(
                "invalid_field", f"target.{key} must be a whole number from 0 to {MAX_BIGINT}"
            )
        return value
    return None


def _target_kind(action: Action, target: Mapping[str, Any]) -> TargetKind:
    raw_url = target.get("url")
    url = raw_url if isinstance(raw_url, str) else ""
    media_type = target.get("mediaType")
    if "/blobs/" in url or media_type == BLOB_MEDIA_TYPE:
        return TargetKind.BLOB
    if "/manifests/" in url or media_type in MANIFEST_MEDIA_TYPES:
        return TargetKind.MANIFEST
    if action is Action.DELETE:
        if target.get("digest"):
            # 2.8 and 3.x send the same shape for manifest and blob deletes; only manifest
            # deletes have an HTTP route that clients use, so a bare digest is a manifest.
            return TargetKind.MANIFEST
        if target.get("tag"):
            return TargetKind.TAG
        return TargetKind.REPOSITORY
    if action is Action.MOUNT:
        return TargetKind.BLOB
    return TargetKind.MANIFEST


def parse_event(item: Any) -> Event:
    """One element of `events[]` → Event; ParseError with a reason code when unusable."""
    if not isinstance(item, dict):
        raise ParseError("invalid_event", "event is not an object")
    event_id = _text(item, "id", "event", required=True)
    action_text = _text(item, "action", "event", required=True)
    action = _ACTIONS.get(action_text or "")
    if action is None:
        raise ParseError("unknown_action", f"event.action {action_text!r} is not known")
    stamp = _text(item, "timestamp", "event", required=True)
    try:
        occurred_at = parse_timestamp(stamp or "")
    except ValueError as exc:
        raise ParseError("invalid_field", f"event.timestamp: {exc}") from None
    target = _object(item, "target")
    request = _object(item, "request")
    actor = _object(item, "actor")
    source = _object(item, "source")
    repository = _text(target, "repository", "target", required=True)
    digest = _text(target, "digest", "target")
    tag = _text(target, "tag", "target")
    if action is not Action.DELETE and digest is None:
        raise ParseError("missing_field", "target.digest is missing")
    references: list[str] = []
    raw_refs = target.get("references")
    if isinstance(raw_refs, list):
        references = [
            r["digest"] for r in raw_refs if isinstance(r, dict) and _is_str(r.get("digest"))
        ]
    user_agent = _text(request, "useragent", "request")
    kind = _target_kind(action, target)
    return Event(
        event_id=event_id or "",
        source=Source.NOTIFICATION,
        action=action,
        occurred_at=occurred_at,
        target_kind=kind,
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=_text(target, "mediaType", "target"),
        size=_size(target),
        from_repository=_text(target, "fromRepository", "target"),
        actor=_text(actor, "name", "actor"),
        remote_ip=host_of(_text(request, "addr", "request")),
        user_agent=user_agent,
        http_method=(_text(request, "method", "request") or "").upper() or None,
        request_id=_text(request, "id", "request"),
        client=classify_client(user_agent),
        route=kind.value if kind in (TargetKind.MANIFEST, TargetKind.BLOB) else None,
        instance=_text(source, "instanceID", "source"),
        references=tuple(references),
    )


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_FIELD_CHARS
