"""The real captured notifications, loaded and normalized the way intake does it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from monitor.events import Event
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
