"""The captured logs with the notifications of the same run (request ids match), both versions."""

from __future__ import annotations

import json
from pathlib import Path

from monitor.events import Event
from monitor.ingest.notification import parse_envelope
from tests.paths import fixtures, fixtures_31

# (capture, log, notifications of that run)
RUNS = (
    ("2.8", "registry-text.log", "notifications"),
    ("2.8", "registry-json.log", "notifications-json"),
    ("3.1", "registry-text.log", "notifications"),
    ("3.1", "registry-json.log", "notifications-json"),
)
RUN_IDS = [
    f"{version}-{log.removeprefix('registry-').removesuffix('.log')}" for version, log, _ in RUNS
]


def capture_dir(version: str) -> Path:
    return fixtures() if version == "2.8" else fixtures_31()


def log_lines(version: str, log: str) -> list[str]:
    return (capture_dir(version) / log).read_text().splitlines()


def notified(version: str, run: str) -> list[Event]:
    """Every notified event of the run, in order of arrival."""
    files = sorted((capture_dir(version) / run).glob("*.json"))
    assert files, f"no notifications in {capture_dir(version) / run}"
    events: list[Event] = []
    for path in files:
        document = json.loads(path.read_text())
        body = json.dumps(document["body"]).encode()
        events.extend(parse_envelope(body, document["headers"]["Content-Type"]).events)
    return events


def schema1_config_pulls(events: list[Event]) -> list[Event]:
    """2.8's extra config blob pull of a GET rewritten to schema1: the one event no log line
    names (its request's main event is a manifest pull)."""
    manifest_requests = {
        e.request_id
        for e in events
        if e.target_kind is not None and e.target_kind.value == "manifest"
    }
    return [
        e
        for e in events
        if e.target_kind is not None
        and e.target_kind.value == "blob"
        and e.request_id in manifest_requests
    ]
