"""registry-monitor as a real process: TLS listener, coverage heartbeats, restarts."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from monitor.store.coverage import covered_intervals, gaps
from tests.fixture_events import iter_posts
from tests.harness import TOKEN, running_monitor, wait_until
from tests.registry_harness import make_tls_cert

V1 = "application/vnd.docker.distribution.events.v1+json"


class TestMonitorProcess:
    def test_serves_https_with_a_certificate(self, tmp_path: Path, db_url: str) -> None:
        """With tls_cert and tls_key the listener speaks HTTPS only."""
        cert, key = make_tls_cert(directory=tmp_path / "tls")
        with running_monitor(
            tmp_path,
            db_url,
            REGISTRY_MONITOR_HTTP_TLS_CERT=str(cert),
            REGISTRY_MONITOR_HTTP_TLS_KEY=str(key),
        ) as monitor:
            url = monitor.url.replace("http://", "https://")
            _name, _headers, body = next(iter_posts())
            response = httpx.post(
                f"{url}/v1/notifications",
                content=body,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": V1},
                verify=ssl.create_default_context(cafile=str(cert)),
            )
            assert (200, {"queued": True}) == (response.status_code, response.json())
            assert (
                200
                == httpx.get(
                    f"{url}/healthz", verify=ssl.create_default_context(cafile=str(cert))
                ).status_code
            )

    def test_coverage_is_recorded_and_a_restart_is_a_gap(self, tmp_path: Path, db_url: str) -> None:
        """While serving, heartbeats cover time; the time it was stopped is a gap."""
        started = datetime.now(UTC)
        engine = create_engine(db_url)

        def covered() -> list[tuple[datetime, datetime]]:
            with Session(engine) as session:
                return covered_intervals(
                    session, source="notification", since=started, until=datetime.now(UTC)
                )

        def spans(count: int) -> bool:
            """`count` intervals, the last of them spanning at least one heartbeat."""
            found = covered()
            return len(found) == count and found[-1][1] > found[-1][0]

        try:
            with running_monitor(tmp_path, db_url) as monitor:
                wait_until(lambda: spans(1), timeout=30, what="heartbeats after the start")
                monitor.stop()
                stopped = datetime.now(UTC)
                # Down longer than a heartbeat may lag (2.5 heartbeats): the next one starts anew.
                wait_until(
                    lambda: datetime.now(UTC) - covered()[-1][1] > timedelta(seconds=2.5),
                    timeout=30,
                    what="the last heartbeat to be older than the gap a heartbeat may leave",
                )
                restarted = datetime.now(UTC)
                monitor.start()
                wait_until(lambda: spans(2), timeout=30, what="heartbeats after the restart")
            ended = datetime.now(UTC)
            with Session(engine) as session:
                intervals = covered_intervals(
                    session, source="notification", since=started, until=ended
                )
        finally:
            engine.dispose()
        holes = gaps(intervals, since=started, until=ended)
        assert 2 == len(intervals)
        assert any(a <= stopped and b >= restarted for a, b in holes)
