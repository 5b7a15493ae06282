"""Events for tests: the real captured notifications, loaded and normalized the way intake does
it, and `make_event`, the one factory of synthetic events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.events import Action, Client, Event, Source, TargetKind, classify_client
from monitor.ingest.notification import parse_envelope
from tests.paths import fixtures

RUNS = ("notifications", "notifications-json")


def capture_files(run: str = "notifications") -> list[Path]:
    files = sorted((fixtures() / run).glob("*.json"))
    if not files:
        raise RuntimeError(f"no captured notifications in {fixtures() / run}")
    return files


def capture(path: Path) -> tuple[dict[str, str], bytes]:
    """(headers, body bytes) of one captured POST."""
    document: dict[str, Any] = json.loads(path.read_text())
    return document["headers"], json.dumps(document["body"]).encode()


def raw_events(run: str = "notifications") -> list[tuple[str, dict[str, Any]]]:
    """(file name, event as the registry sent it) for every captured notification, in order."""
    out: list[tuple[str, dict[str, Any]]] = []
    for path in capture_files(run):
        out.extend((path.name, event) for event in json.loads(path.read_text())["body"]["events"])
    return out


def scenario_events(run: str = "notifications") -> list[Event]:
    """Every event of a run, in order of arrival."""
    out: list[Event] = []
    for path in capture_files(run):
        headers, body = capture(path)
        envelope = parse_envelope(body, headers["Content-Type"])
        assert envelope.rejected == (), path.name
        out.extend(envelope.events)
    return out


def scenario_steps(run: str = "notifications") -> list[list[Event]]:
    """The events of each scenario step that produced any, step by step."""
    steps: list[dict[str, Any]] = json.loads((fixtures() / "expected.json").read_text())["steps"]
    key = "notifications_text_run" if run == "notifications" else "notifications_json_run"
    out: list[list[Event]] = []
    for step in steps:
        names = step[key]
        if not names:
            continue
        events: list[Event] = []
        for name in names:
            headers, body = capture(fixtures() / run / name)
            events.extend(parse_envelope(body, headers["Content-Type"]).events)
        out.append(events)
    return out


def expected(run: str = "notifications") -> dict[str, Any]:
    key = "notifications_text_run" if run == "notifications" else "notifications_json_run"
    data: dict[str, Any] = json.loads((fixtures() / "expected.json").read_text())[key]
    return data


def iter_posts(run: str = "notifications") -> Iterator[tuple[str, dict[str, str], bytes]]:
    for path in capture_files(run):
        headers, body = capture(path)
        yield path.name, headers, body


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
