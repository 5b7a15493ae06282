"""POST /v1/notifications: authentication, limits, quarantine, idempotency, store outages."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from monitor.main import build_app, build_services
from monitor.observability.lograte import LogRate
from monitor.runtime import Services
from monitor.settings import Settings
from monitor.store.inbox import inbox_path
from tests.conftest import PostgresDatabases, SqliteWriteLock, make_settings
from tests.fixture_events import iter_posts
from tests.live import live_server

V1 = "application/vnd.docker.distribution.events.v1+json"
AUTH = {"Authorization": "Bearer s3cret", "Content-Type": V1}


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(build_app(services, with_jobs=False)) as test_client:
        yield test_client


def first_post() -> bytes:
    _name, _headers, body = next(iter_posts())
    return body


def applied(services: Services) -> None:
    """Wait until every body the inbox answered for is applied to the store."""
    assert services.applier.drain(), "the intake inbox was not applied"


def event_count(services: Services) -> int:
    with services.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())


class TestAuthentication:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic czNjcmV0"},
            {"Authorization": "Bearer"},
            {"Authorization": "s3cret"},
        ],
    )
    def test_missing_or_wrong_token_is_401_with_a_json_error(
        self, client: TestClient, services: Services, headers: dict[str, str]
    ) -> None:
        """No token, a wrong one or another scheme: 401, a JSON error, nothing stored."""
        response = client.post("/v1/notifications", content=first_post(), headers=headers)
        assert 401 == response.status_code
        assert "unauthorized" == response.json()["error"]["code"]
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert 0 == event_count(services)

    @pytest.mark.parametrize("token", ["s3cret", "next-s3cret"])
    def test_every_configured_token_is_accepted(self, client: TestClient, token: str) -> None:
        """Several tokens are valid at once, so a token can be rotated without downtime."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": V1}
        assert (
            200
            == client.post("/v1/notifications", content=first_post(), headers=headers).status_code
        )


class TestIntake:
    def test_the_whole_scenario_is_stored(self, client: TestClient, services: Services) -> None:
        """All 43 captured POSTs, with their real headers, are accepted and stored."""
        for _name, headers, body in iter_posts():
            response = client.post(
                "/v1/notifications",
                content=body,
                headers={
                    "Authorization": headers["Authorization"],
                    "Content-Type": headers["Content-Type"],
                },
            )
            assert (200, {"queued": True}) == (response.status_code, response.json())
        applied(services)
        assert 43 == event_count(services)

    def test_a_redelivered_event_is_stored_once(
        self, client: TestClient, services: Services
    ) -> None:
        """The registry re-sends the same id after a timeout; every answer is 2xx, the row one,
        and the repeats are counted as duplicates."""
        answers = [
            client.post("/v1/notifications", content=first_post(), headers=AUTH).status_code
            for _ in range(3)
        ]
        assert [200, 200, 200] == answers
        applied(services)
        assert 1 == event_count(services)
        metrics = client.get("/metrics").text
        assert 'registry_monitor_events_duplicate_total{source="notification"} 2.0' in metrics

    def test_one_event_posted_five_times_at_once_is_stored_once(self, services: Services) -> None:
        """Five concurrent deliveries of one event: all answered 2xx, one row."""
        with (
            live_server(build_app(services, with_jobs=False)) as url,
            concurrent.futures.ThreadPoolExecutor(5) as pool,
        ):
            answers = list(
                pool.map(
                    lambda _: httpx.post(
                        f"{url}/v1/notifications", content=first_post(), headers=AUTH
                    ),
                    range(5),
                )
            )
        assert [200] * 5 == [a.status_code for a in answers]
        assert 1 == event_count(services)

    def test_a_body_above_the_limit_is_413(self, client: TestClient, services: Services) -> None:
        """2 MiB is refused with 413 and a JSON error."""
        response = client.post(
            "/v1/notifications", content=b"{" + b" " * (2 * 1024 * 1024), headers=AUTH
        )
        assert (413, "payload_too_large") == (
            response.status_code,
            response.json()["error"]["code"],
        )
        assert 0 == event_count(services)

    def test_garbage_is_quarantined_and_visible(
        self, client: TestClient, services: Services
    ) -> None:
        """Authenticated garbage is answered 2xx (never blocks the registry) and can be seen."""
        response = client.post("/v1/notifications", content=b"\x00not json", headers=AUTH)
        assert 200 == response.status_code
        applied(services)
        listed = client.get("/v1/quarantine").json()["items"]
        assert [("notification", "invalid_json")] == [(q["source"], q["reason"]) for q in listed]
        assert listed[0]["size"] == 9

    def test_a_partly_bad_envelope_keeps_the_good_events(
        self, client: TestClient, services: Services
    ) -> None:
        """The usable events of an envelope are stored; the bad one is quarantined."""
        good = json.loads(first_post())["events"][0]
        body = json.dumps({"events": [good, {"id": "x", "action": "fly"}]}).encode()
        response = client.post("/v1/notifications", content=body, headers=AUTH)
        assert 200 == response.status_code
        applied(services)
        assert 1 == event_count(services)
        (quarantined,) = client.get("/v1/quarantine").json()["items"]
        assert ("notification", 1) == (quarantined["source"], quarantined["count"])

    def test_metrics_count_events_duplicates_and_quarantine(
        self, client: TestClient, services: Services
    ) -> None:
        """The intake counters move with what was stored, repeated and quarantined."""
        client.post("/v1/notifications", content=first_post(), headers=AUTH)
        client.post("/v1/notifications", content=first_post(), headers=AUTH)
        client.post("/v1/notifications", content=b"[]", headers=AUTH)
        client.post("/v1/notifications", content=b"", headers={})
        applied(services)
        metrics = client.get("/metrics").text
        assert "registry_monitor_intake_backlog 0.0" in metrics
        assert "registry_monitor_intake_apply_delay_seconds_count 3.0" in metrics
        assert (
            'registry_monitor_events_total{action="push",source="notification",target_kind="blob"} 1.0'
            in metrics
        )
        assert 'registry_monitor_events_duplicate_total{source="notification"} 1.0' in metrics
        assert (
            'registry_monitor_quarantined_total{reason="invalid_envelope",source="notification"} 1.0'
            in metrics
        )
        assert 'registry_monitor_intake_requests_total{code="401"} 1.0' in metrics
        assert "registry_monitor_intake_latency_seconds_count 4.0" in metrics
        # The three bodies answered 200 waited for their commit; the refusal for none.
        assert "registry_monitor_intake_inbox_seconds_count 3.0" in metrics

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        body=st.binary(max_size=4096),
        content_type=st.sampled_from([V1, "application/json", "text/plain", "", "a/b; c=d"]),
        authorization=st.sampled_from(["Bearer s3cret", "Bearer x", "", "Basic eA=="]),
        extra=st.dictionaries(
            st.from_regex(r"X-[A-Za-z]{1,10}", fullmatch=True),
            st.from_regex(r"[ -~]{0,30}", fullmatch=True),
            max_size=3,
        ),
    )
    def test_random_requests_never_get_a_5xx(
        self,
        client: TestClient,
        body: bytes,
        content_type: str,
        authorization: str,
        extra: dict[str, str],
    ) -> None:
        """Whatever arrives, with the store up the answer is 200, 401 or 413."""
        headers = {"Content-Type": content_type, **extra}
        if authorization:
            headers["Authorization"] = authorization
        response = client.post("/v1/notifications", content=body, headers=headers)
        assert response.status_code in (200, 401, 413)
        assert response.headers["content-type"].startswith("application/json")


class Outage:
    """The intake inbox cannot commit. SQLite: another process holds the inbox file's write
    lock. PostgreSQL: the server refuses us."""

    def __init__(self, db_url: str, postgres: PostgresDatabases) -> None:
        self.db_url = db_url
        self.postgres = postgres
        self.lock: SqliteWriteLock | None = None

    def start(self) -> None:
        if self.db_url.startswith("sqlite"):
            self.lock = SqliteWriteLock(
                f"sqlite:///{inbox_path(make_url(self.db_url).database or '')}"
            )
        else:
            self.postgres.set_allow_connections(self.db_url, False)

    def end(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        else:
            self.postgres.set_allow_connections(self.db_url, True)


@pytest.fixture
def impatient(db_url: str, tmp_path: Path) -> Iterator[Services]:
    """Services whose SQLite writes give up after 0.2 s of waiting for a lock."""
    settings = make_settings(
        db_url, tmp_path, REGISTRY_MONITOR_DATABASE_SQLITE_BUSY_TIMEOUT_SECONDS="0.2"
    )
    built = build_services(settings, registry=CollectorRegistry(), migrate=True)
    built.start()
    try:
        yield built
    finally:
        built.stop()
        built.engine.dispose()


class TestStoreOutage:
    def test_outage_is_503_then_everything_is_stored_once(
        self, impatient: Services, db_url: str, postgres: PostgresDatabases
    ) -> None:
        """While the inbox cannot commit: 503 with Retry-After, nothing acknowledged.

        After it recovers, the same deliveries are stored, each once.
        """
        services = impatient
        outage = Outage(db_url, postgres)
        with TestClient(build_app(services, with_jobs=False)) as client:
            outage.start()
            try:
                down = client.post("/v1/notifications", content=first_post(), headers=AUTH)
                assert (503, "store_unavailable", "1") == (
                    down.status_code,
                    down.json()["error"]["code"],
                    down.headers["retry-after"],
                )
            finally:
                outage.end()
            answers = [
                client.post("/v1/notifications", content=body, headers=AUTH).status_code
                for _name, _headers, body in iter_posts()
            ]
            assert [200] * 43 == answers
            applied(services)
            assert 200 == client.get("/readyz").status_code
        assert 43 == event_count(services)

    def test_a_store_locked_by_another_writer_does_not_stall_intake(self, tmp_path: Path) -> None:
        """SQLite (PostgreSQL has no store-wide write lock): while another process holds the
        store's write lock (a long delete, a backup), notifications are still answered 200 from
        the inbox, and their events are stored once the lock is released."""
        db_url = f"sqlite:///{tmp_path / 'store.db'}"
        settings = make_settings(
            db_url, tmp_path, REGISTRY_MONITOR_DATABASE_SQLITE_BUSY_TIMEOUT_SECONDS="0.2"
        )
        services = build_services(settings, registry=CollectorRegistry(), migrate=True)
        services.start()
        try:
            self._post_while_locked(services, db_url)
        finally:
            services.stop()
            services.engine.dispose()
        assert 43 == event_count(services)

    def _post_while_locked(self, services: Services, db_url: str) -> None:
        with TestClient(build_app(services, with_jobs=False)) as client:
            lock = SqliteWriteLock(db_url)
            try:
                answers = [
                    client.post("/v1/notifications", content=body, headers=AUTH).status_code
                    for _name, _headers, body in iter_posts()
                ]
                assert 43 == services.inbox.backlog()
            finally:
                lock.release()
            assert [200] * 43 == answers
            applied(services)

    def test_readyz_fails_while_postgres_refuses(
        self, services: Services, db_url: str, postgres: PostgresDatabases
    ) -> None:
        """/readyz answers 503 while the store cannot be reached, 200 again after."""
        with TestClient(build_app(services, with_jobs=False)) as client:
            assert 200 == client.get("/readyz").status_code
            if db_url.startswith("postgresql"):
                postgres.set_allow_connections(db_url, False)
                try:
                    assert 503 == client.get("/readyz").status_code
                finally:
                    postgres.set_allow_connections(db_url, True)
            assert 200 == client.get("/readyz").status_code


class BrokenClock:
    """A clock that fails while `broken` is set: an unexpected error inside the handler."""

    def __init__(self) -> None:
        self.broken = False

    def __call__(self) -> datetime:
        if self.broken:
            raise RuntimeError("the clock failed")
        return datetime.now(UTC)


class TestUnexpectedFailure:
    def test_an_unexpected_error_is_a_500_that_the_intake_counter_counts(
        self, settings: Settings
    ) -> None:
        """A failure nothing foresees answers 500 and is counted under code 500 like every
        other answer (the dashboard's intake panel shows it); the next request is served."""
        clock = BrokenClock()
        services = build_services(settings, clock=clock, registry=CollectorRegistry(), migrate=True)
        services.start()
        try:
            app = build_app(services, with_jobs=False)
            with TestClient(app, raise_server_exceptions=False) as client:
                clock.broken = True
                failed = client.post("/v1/notifications", content=first_post(), headers=AUTH)
                clock.broken = False
                stored = client.post("/v1/notifications", content=first_post(), headers=AUTH)
                metrics = client.get("/metrics").text
            applied(services)
            stored_events = event_count(services)
        finally:
            services.stop()
            services.engine.dispose()
        assert (500, 200) == (failed.status_code, stored.status_code)
        assert 'registry_monitor_intake_requests_total{code="500"} 1.0' in metrics
        assert 'registry_monitor_intake_requests_total{code="200"} 1.0' in metrics
        assert 1 == stored_events


class TestLogs:
    def test_tokens_never_reach_the_log(self, client: TestClient, services: Services) -> None:
        """Refused and accepted requests log what happened, never the token sent or configured."""
        from structlog.testing import capture_logs

        with capture_logs() as logs:
            client.post(
                "/v1/notifications",
                content=first_post(),
                headers={"Authorization": "Bearer guessed-token-123", "Content-Type": V1},
            )
            client.post("/v1/notifications", content=b"junk", headers=AUTH)
            applied(services)
        text = repr(logs)
        assert ["notification refused", "notification quarantined"] == [e["event"] for e in logs]
        assert "guessed-token-123" not in text
        assert "s3cret" not in text


class TestRefusalLog:
    def test_refusals_are_logged_once_per_code_and_interval_and_all_counted(
        self, client: TestClient, services: Services
    ) -> None:
        """A registry refused sends again at once: the log keeps one line per code every 10 s,
        the next one says how many it held back, and the counter counts every refusal."""
        from structlog.testing import capture_logs

        now = [1000.0]
        client.app.state.intake_log_rate = LogRate(10.0, clock=lambda: now[0])  # type: ignore[attr-defined]
        wrong = {"Authorization": "Bearer wrong", "Content-Type": V1}
        with capture_logs() as logs:
            for _ in range(5):
                assert (
                    401
                    == client.post(
                        "/v1/notifications", content=first_post(), headers=wrong
                    ).status_code
                )
            now[0] += 10.0
            client.post("/v1/notifications", content=first_post(), headers=wrong)
        assert [(e["event"], e["code"], e["held_back"]) for e in logs] == [
            ("notification refused", "unauthorized", 0),
            ("notification refused", "unauthorized", 4),
        ]
        metrics = client.get("/metrics").text
        assert 'registry_monitor_intake_requests_total{code="401"} 6.0' in metrics


class TestLogRate:
    def test_one_line_per_key_and_interval_then_what_was_held_back(self) -> None:
        now = [0.0]
        rate = LogRate(10.0, clock=lambda: now[0])
        assert [0, None, None] == [rate.admit("a") for _ in range(3)]
        assert 0 == rate.admit("b")  # keys are held back apart
        now[0] = 9.9
        assert rate.admit("a") is None
        now[0] = 10.0
        assert 3 == rate.admit("a")
        assert rate.admit("a") is None


def bucket(metrics: str, name: str, le: str) -> float:
    prefix = f'{name}_bucket{{le="{le}"}} '
    (line,) = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return float(line.removeprefix(prefix))


class TestInboxWait:
    def test_an_answer_held_by_the_inbox_commit_shows_it_as_the_stores_share(
        self, postgres_services: tuple[Services, str]
    ) -> None:
        """PostgreSQL: while another session locks the inbox table for 0.4 s, the answer waits
        for its commit, and `intake_inbox_seconds` says the store held it, not the process: both
        histograms put it above 0.25 s; an answer with nothing in the way is under it in both."""
        services, url = postgres_services
        name = "registry_monitor_intake"
        with TestClient(build_app(services, with_jobs=False)) as client:
            quick = client.post("/v1/notifications", content=first_post(), headers=AUTH)
            engine = create_engine(url)
            try:
                with engine.begin() as locker:
                    locker.execute(text("LOCK TABLE intake_inbox IN ACCESS EXCLUSIVE MODE"))
                    pool = concurrent.futures.ThreadPoolExecutor(1)
                    held = pool.submit(
                        client.post, "/v1/notifications", content=first_post(), headers=AUTH
                    )
                    time.sleep(0.4)
                answer = held.result(10)
                pool.shutdown()
            finally:
                engine.dispose()
            metrics = client.get("/metrics").text
        assert (200, 200) == (quick.status_code, answer.status_code)
        for histogram in (f"{name}_inbox_seconds", f"{name}_latency_seconds"):
            assert (1.0, 2.0) == (
                bucket(metrics, histogram, "0.25"),
                bucket(metrics, histogram, "+Inf"),
            ), histogram
