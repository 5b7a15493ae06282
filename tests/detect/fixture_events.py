"""Events from the real distribution-2.8 capture, for the detection tests.

A small local reader of the notification files and of the few registry log lines detection
needs (failed logins, catalog and tag listings, manifest 404s). It stands in for the real
parsers and can be swapped for them later.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.events import (
    MANIFEST_MEDIA_TYPES,
    Action,
    Client,
    Event,
    Source,
    TargetKind,
    classify_client,
    host_of,
    parse_timestamp,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "distribution-2.8"


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"shared fixture missing: {path} (expected beside the repository)")
    return path


def _kind(action: str, target: dict[str, Any]) -> TargetKind:
    if action == "delete":
        return (
            TargetKind.TAG
            if target.get("tag") and not target.get("digest")
            else TargetKind.MANIFEST
        )
    url = str(target.get("url", ""))
    if "/manifests/" in url or target.get("mediaType") in MANIFEST_MEDIA_TYPES:
        return TargetKind.MANIFEST
    return TargetKind.BLOB


def notification_event(raw: dict[str, Any]) -> Event:
    target = raw.get("target") or {}
    request = raw.get("request") or {}
    agent = request.get("useragent") or None
    return Event(
        event_id=raw["id"],
        source=Source.NOTIFICATION,
        action=Action(raw["action"]),
        occurred_at=parse_timestamp(raw["timestamp"]),
        target_kind=_kind(raw["action"], target),
        repository=target.get("repository"),
        tag=target.get("tag"),
        digest=target.get("digest"),
        media_type=target.get("mediaType"),
        size=target.get("size"),
        from_repository=target.get("fromRepository"),
        actor=(raw.get("actor") or {}).get("name"),
        remote_ip=host_of(request.get("addr")),
        user_agent=agent,
        http_method=request.get("method"),
        request_id=request.get("id"),
        client=classify_client(agent),
    )


def notification_events(run: str = "notifications") -> list[Event]:
    """Every event of the capture's notification POSTs, in arrival order."""
    directory = _require(FIXTURES / run)
    events: list[Event] = []
    for path in sorted(directory.glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))["body"]
        events.extend(notification_event(raw) for raw in body["events"])
    return events


_FIELD = re.compile(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)')
_FAILED_LOGIN = re.compile(r'^error authenticating user "(.*)": authentication failure$')
_MANIFEST = re.compile(r"^/v2/(.+)/manifests/([^/?]+)$")
_TAGS = re.compile(r"^/v2/(.+)/tags/list")


def _fields(line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in _FIELD.findall(line):
        out[key] = json.loads(value) if value.startswith('"') else value
    return out


def _log_event(fields: dict[str, str], **values: Any) -> Event:
    agent = fields.get("http.request.useragent")
    return Event(
        event_id=f"log:{fields['http.request.id']}:{values['action']}",
        source=Source.LOG,
        occurred_at=parse_timestamp(fields["time"]),
        remote_ip=host_of(fields.get("http.request.remoteaddr")),
        user_agent=agent,
        http_method=fields.get("http.request.method"),
        request_id=fields.get("http.request.id"),
        request_uri=fields.get("http.request.uri"),
        client=classify_client(agent),
        **values,
    )


def log_events() -> list[Event]:
    """Failed logins and enumeration-relevant requests from the text-run registry log."""
    events: list[Event] = []
    lines = _require(FIXTURES / "registry-text.log").read_text(encoding="utf-8").splitlines()
    for line in lines:
        if not line.startswith("time="):
            continue
        fields = _fields(line)
        message = fields.get("msg", "")
        failed = _FAILED_LOGIN.match(message)
        if failed:
            events.append(_log_event(fields, action=Action.AUTH_FAILURE, actor=failed.group(1)))
            continue
        if not message.startswith("response completed"):
            continue
        uri = fields.get("http.request.uri", "")
        status = int(fields["http.response.status"])
        route, repository, tag = None, None, None
        if uri.startswith("/v2/_catalog"):
            route = "catalog"
        elif match := _TAGS.match(uri):
            route, repository = "tags", match.group(1)
        elif (match := _MANIFEST.match(uri)) and status == 404:
            route, repository, tag = "manifest", match.group(1), match.group(2)
        if route is None:
            continue
        events.append(
            _log_event(
                fields,
                action=Action.REQUEST,
                route=route,
                repository=repository,
                tag=tag,
                http_status=status,
                actor=fields.get("auth.user.name"),
            )
        )
    return events


def scenario_events() -> list[Event]:
    """The whole shared scenario: notifications and log-derived events, in time order."""
    return sorted(notification_events() + log_events(), key=lambda e: e.occurred_at)


BASE_TIME = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
"""A Wednesday, 10:00 UTC: inside default business hours."""

_counter = iter(range(10**9))


def make_event(**overrides: Any) -> Event:
    """A synthetic event: a docker manifest pull by alice from 127.0.0.1 unless overridden.

    `seconds` offsets `occurred_at` from BASE_TIME.
    """
    seconds = overrides.pop("seconds", 0)
    values: dict[str, Any] = {
        "event_id": f"synthetic-{next(_counter)}",
        "source": Source.NOTIFICATION,
        "action": Action.PULL,
        "occurred_at": BASE_TIME + timedelta(seconds=seconds),
        "target_kind": TargetKind.MANIFEST,
        "repository": "team/app",
        "digest": "sha256:" + "a" * 64,
        "media_type": "application/vnd.oci.image.manifest.v1+json",
        "size": 476,
        "actor": "alice",
        "remote_ip": "127.0.0.1",
        "user_agent": "docker/27.3.1 go/go1.22.7 os/linux arch/amd64",
        "http_method": "GET",
        "client": Client.DOCKER,
    }
    values.update(overrides)
    if "user_agent" in overrides and "client" not in overrides:
        values["client"] = classify_client(values["user_agent"])
    return Event(**values)


def shifted(events: list[Event], delta: timedelta) -> list[Event]:
    return [dataclasses.replace(e, occurred_at=e.occurred_at + delta) for e in events]
