"""Running the service's jobs by hand in tests: a settable clock, the scenario, a roles file."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from starlette.testclient import TestClient

from monitor.alerting.notifier import Notifier
from monitor.alerting.recording import RecordingNotifier
from monitor.api.app import create_app
from monitor.events import Action, Event, Source
from monitor.main import build_services
from monitor.runtime import Services
from monitor.store.schema import AlertOutboxRow, AlertRow
from tests.conftest import make_settings
from tests.detect import fixture_events as detect_fixture
from tests.fixture_events import iter_posts, make_event

SCENARIO_ROLES = {
    "accounts": {
        "alice": {"role": "developer", "repositories": ["library/*", "team/*", "mirror/*"]},
        "bob": {"role": "viewer", "repositories": ["*"]},
    }
}

SCENARIO_END = datetime.fromisoformat("2026-11-27T04:52:37.374580+00:00")
START = SCENARIO_END + timedelta(minutes=1)
"""The clock when the scenario is posted: just after its last event."""


@dataclasses.dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def roles_file(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "roles.yml"
    path.write_text(yaml.safe_dump(SCENARIO_ROLES), encoding="utf-8")
    return path


def start_services(
    db_url: str,
    tmp_path: Path,
    clock: Clock,
    *,
    notifier: Notifier | None = None,
    from_settings: bool = False,
    **env: str,
) -> Services:
    """Services on `db_url` with the scenario roles; the writer is running.

    The notifier is `notifier`, else the one the settings describe (`from_settings`), else a
    RecordingNotifier.
    """
    settings = make_settings(
        db_url, tmp_path, REGISTRY_MONITOR_DETECT_ROLES_FILE=str(roles_file(tmp_path)), **env
    )
    services = build_services(
        settings,
        clock=clock,
        registry=CollectorRegistry(),
        migrate=True,
        notifier=notifier if notifier is not None or from_settings else RecordingNotifier(),
    )
    services.start()
    return services


def stop_services(services: Services) -> None:
    services.stop()
    services.engine.dispose()


def post_scenario(services: Services) -> None:
    """Every captured notification POST through the real intake, then the log-derived events."""
    with TestClient(create_app(services)) as client:
        for name, headers, body in iter_posts():
            sent = {k: headers[k] for k in ("Authorization", "Content-Type", "User-Agent")}
            response = client.post("/v1/notifications", content=body, headers=sent)
            assert response.status_code == 200, (name, response.text)
    assert services.applier.drain(), "the posted notifications were not applied"
    services.writer.submit(detect_fixture.log_events()).result(timeout=30)


def failures(count: int, *, start: datetime, actor: str = "mallory") -> list[Event]:
    """`count` failed logins of `actor` from 127.0.0.1, one a second from `start`."""
    return [
        make_event(
            event_id=f"fail-{actor}-{start.timestamp()}-{i}",
            source=Source.LOG,
            action=Action.AUTH_FAILURE,
            occurred_at=start + timedelta(seconds=i),
            target_kind=None,
            repository=None,
            digest=None,
            media_type=None,
            size=None,
            actor=actor,
            user_agent="skopeo/1.9.3",
        )
        for i in range(count)
    ]


def store(services: Services, events: list[Event]) -> None:
    services.writer.submit(events).result(timeout=30)


def alert_rows(services: Services) -> list[tuple[Any, ...]]:
    """(rule, mode, severity, subject items, count) of every stored alert, sorted."""
    import orjson

    with services.session_factory() as session:
        rows = session.scalars(select(AlertRow)).all()
        return sorted(
            (r.rule, r.mode, r.severity, tuple(orjson.loads(r.subject).items()), r.count)
            for r in rows
        )


def outbox_rows(services: Services) -> list[tuple[str, str, str]]:
    """(kind, rule, state) of every outbox row, by id."""
    with services.session_factory() as session:
        rows = session.scalars(select(AlertOutboxRow).order_by(AlertOutboxRow.id)).all()
        return [(r.kind, r.rule, r.state) for r in rows]
