"""registry-monitor as a real process: TLS listener, coverage heartbeats, restarts."""

from __future__ import annotations

import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from monitor.store.coverage import covered_intervals, gaps
from tests.fixture_events import iter_posts
from tests.harness import TOKEN, running_monitor, wait_for_port
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
            assert (200, 1) == (response.status_code, response.json()["accepted"])
            assert (
                200
                == httpx.get(
                    f"{url}/healthz", verify=ssl.create_default_context(cafile=str(cert))
                ).status_code
            )

    def test_coverage_is_recorded_and_a_restart_is_a_gap(self, tmp_path: Path, db_url: str) -> None:
        """While serving, heartbeats cover time; the time it was stopped is a gap."""
        started = datetime.now(UTC)
        with running_monitor(tmp_path, db_url) as monitor:
            time.sleep(2.5)
            monitor.stop()
            stopped = datetime.now(UTC)
            time.sleep(4)
            monitor.start()
            wait_for_port(monitor.port)
            time.sleep(2.5)
        ended = datetime.now(UTC)
        engine = create_engine(db_url)
        with Session(engine) as session:
            covered = covered_intervals(session, source="notification", since=started, until=ended)
        engine.dispose()
        holes = gaps(covered, since=started, until=ended)
        assert 2 == len(covered)
        assert any(
            a <= stopped + timedelta(seconds=1) and b >= stopped + timedelta(seconds=3)
            for a, b in holes
        )
