"""Hostile input at intake: each reproducer gives its documented outcome on SQLite and PostgreSQL.

Poison is quarantined (2xx, the valid events of the same body stored), never answered 5xx and
never retried forever; quarantine grows by one row per body.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from monitor.main import build_app
from monitor.runtime import Services
from monitor.store.events import EventFilter, query_events
from monitor.store.tags import list_tags
from tests.conftest import PostgresDatabases, _libpq
from tests.ingest.test_notification import push_event
from tests.paths import fixtures

V1 = "application/vnd.docker.distribution.events.v1+json"
AUTH = {"Authorization": "Bearer s3cret", "Content-Type": V1}
LOG_AUTH = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(build_app(services, with_jobs=False)) as test_client:
        yield test_client


def applied(client: TestClient) -> None:
    """Wait until the bodies answered so far are applied to the store."""
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    assert services.applier.drain(), "the intake inbox was not applied"


def post(client: TestClient, *events: object, apply: bool = True) -> Any:
    """POST an envelope of `events`; unless `apply` is False, wait until it is applied."""
    response = client.post(
        "/v1/notifications", content=json.dumps({"events": list(events)}), headers=AUTH
    )
    if apply and response.status_code == 200:
        applied(client)
    return response


def quarantine_rows(services: Services) -> list[tuple[str, int]]:
    with services.engine.connect() as connection:
        rows = connection.execute(text("SELECT reason, count FROM quarantine ORDER BY id"))
        return [(r[0], r[1]) for r in rows]


def target(**overrides: object) -> dict[str, object]:
    """The target of `push_event()` with `overrides`."""
    base = push_event()["target"]
    assert isinstance(base, dict)
    return {**base, **overrides}


def stored(services: Services, **where: Any) -> list[Any]:
    with services.session_factory() as session:
        page, _ = query_events(session, where=EventFilter(**where), limit=1000)
    return [e.event for e in page]


def good(n: int, **overrides: object) -> dict[str, object]:
    return push_event(id=f"good-{n}", **overrides)


def fixture_line(number: int) -> str:
    return (fixtures() / "registry-text.log").read_text().splitlines()[number - 1]


class TestPoisonNotifications:
    """Each poison event is quarantined alone; the answer is 200; the rest is stored."""

    @pytest.mark.parametrize(
        ("name", "poison"),
        [
            ("timestamp_beyond_year_9999_in_utc", {"timestamp": "9999-12-31T23:59:59-01:00"}),
            ("timestamp_before_year_1_in_utc", {"timestamp": "0001-01-01T00:00:00+01:00"}),
            ("far_future_timestamp", {"timestamp": "9999-01-01T00:00:00Z"}),
            ("timestamp_before_2000", {"timestamp": "1999-12-31T23:59:59Z"}),
            ("nul_in_repository", {"target": target(repository="a\x00b")}),
            ("nul_in_tag", {"target": target(tag="v\x001")}),
            ("size_above_bigint", {"target": target(size=2**63)}),
            (
                "digest_of_307_characters",
                {"target": target(digest="sha256:" + "a" * 300)},
            ),
            ("deeply_nested_event", {"target": json.loads("[" * 300 + "]" * 300)}),
        ],
    )
    def test_poison_event_is_quarantined_and_its_envelope_stored(
        self, client: TestClient, services: Services, name: str, poison: dict[str, object]
    ) -> None:
        """The poison event is quarantined (one row, count 1); the valid ones are stored."""
        response = post(client, good(1), push_event(id=f"bad-{name}", **poison), good(2))
        assert 200 == response.status_code, response.text
        assert {"good-1", "good-2"} == {e.event_id for e in stored(services)}
        ((_reason, count),) = quarantine_rows(services)
        assert 1 == count

    def test_nested_1000_levels_deep_is_quarantined_not_500(
        self, client: TestClient, services: Services
    ) -> None:
        """Nesting orjson can read but not write back (255-1023 levels) is quarantined."""
        for depth in (255, 600, 1023, 1100):
            body = '{"events": [' + "[" * depth + "]" * depth + "]}"
            response = client.post("/v1/notifications", content=body, headers=AUTH)
            assert 200 == response.status_code, depth
        applied(client)
        assert 4 == len(quarantine_rows(services))

    def test_nul_and_control_characters_in_free_text_are_escaped_and_stored(
        self, client: TestClient, services: Services
    ) -> None:
        """An actor or user agent with NUL or ESC is stored, written out as `\\xNN`."""
        event = good(
            1,
            actor={"name": "bo\x00b"},
            request={"addr": "10.0.0.1:1", "method": "PUT", "useragent": "evil\r\n\x1b[31mred"},
        )
        assert 200 == post(client, event).status_code
        (stored_event,) = stored(services)
        assert ("bo\\x00b", "evil\\x0d\\x0a\\x1b[31mred") == (
            stored_event.actor,
            stored_event.user_agent,
        )
        assert 1 == len(stored(services, actor="bo\\x00b"))

    def test_an_event_dated_9999_does_not_own_its_tag(
        self, client: TestClient, services: Services
    ) -> None:
        """The far-future push is quarantined; the real push after it moves the tag."""
        post(client, push_event(id="future", timestamp="9999-01-01T00:00:00Z"))
        real = push_event(id="real", target=target(digest="sha256:" + "b" * 64))
        assert 200 == post(client, real).status_code
        with services.session_factory() as session:
            (tag,) = list_tags(session, repository="team/app")
        assert "sha256:" + "b" * 64 == tag.to_dict()["digest"]

    def test_a_list_longer_than_the_limit_is_one_quarantine_row(
        self, client: TestClient, services: Services
    ) -> None:
        """1 MB of `{}` events is refused before it is decoded: one quarantine row, 200; a list
        just above the limit counts its events."""
        body = b'{"events":[' + b",".join([b"{}"] * 349_000) + b"]}"
        response = client.post("/v1/notifications", content=body, headers=AUTH)
        assert 200 == response.status_code
        above = b'{"events":[' + b",".join([b"{}"] * 1001) + b"]}"
        response = client.post("/v1/notifications", content=above, headers=AUTH)
        assert 200 == response.status_code
        applied(client)
        assert [("too_many_events", 1), ("too_many_events", 1001)] == quarantine_rows(services)

    def test_many_bad_events_below_the_limit_are_one_quarantine_row(
        self, client: TestClient, services: Services
    ) -> None:
        """Every bad event of a body is counted in one row."""
        assert 200 == post(client, *[{} for _ in range(500)], good(1)).status_code
        assert [("missing_field", 500)] == quarantine_rows(services)
        assert ["good-1"] == [e.event_id for e in stored(services)]


class TestPoisonLogs:
    def test_a_failed_login_with_a_nul_in_the_user_is_stored_and_later_ones_too(
        self, client: TestClient, services: Services
    ) -> None:
        """`error authenticating user "bo\\x00b"`: stored with the NUL written out; the
        failed logins after it are stored as well (nothing is stuck)."""
        poisoned = [fixture_line(n).replace("mallory", "bo\\\\x00b") for n in (10, 11)]
        body = "\n".join([*poisoned, fixture_line(15), fixture_line(16)])
        response = client.post(
            "/v1/logs", content=body, headers={**LOG_AUTH, "Content-Type": "text/plain"}
        )
        assert 200 == response.status_code, response.text
        actors = sorted(e.actor for e in stored(services, action="auth_failure"))
        assert ["bo\\x00b", "mallory"] == actors

    def test_a_digest_of_307_characters_in_a_url_quarantines_that_event(
        self, client: TestClient, services: Services
    ) -> None:
        """The request for an impossible digest is quarantined; the other lines are stored."""
        long_digest = (
            fixture_line(61)
            .replace(
                "/v2/library/hello/manifests/1.0", "/v2/library/hello/manifests/sha256:" + "a" * 300
            )
            .replace("http.response.status=201", "http.response.status=404")
        )
        body = "\n".join([long_digest, fixture_line(10), fixture_line(11)])
        response = client.post(
            "/v1/logs", content=body, headers={**LOG_AUTH, "Content-Type": "text/plain"}
        )
        assert (200, 1, 1) == (
            response.status_code,
            response.json()["accepted"],
            response.json()["quarantined"],
        )
        assert [("unsafe_field", 1)] == quarantine_rows(services)

    def test_an_array_of_400k_numbers_is_413(self, client: TestClient, services: Services) -> None:
        """0.8 MB of `[1,1,…]` on /v1/logs holds more records than a body may: 413."""
        body = b"[" + b",".join([b"1"] * 400_000) + b"]"
        response = client.post(
            "/v1/logs", content=body, headers={**LOG_AUTH, "Content-Type": "application/json"}
        )
        assert (413, []) == (response.status_code, quarantine_rows(services))

    def test_records_without_lines_are_one_quarantine_row(
        self, client: TestClient, services: Services
    ) -> None:
        """10,000 records that hold no log line: one row counting them all."""
        body = b"[" + b",".join([b"1"] * 10_000) + b"]"
        response = client.post(
            "/v1/logs", content=body, headers={**LOG_AUTH, "Content-Type": "application/json"}
        )
        assert (200, 10_000) == (response.status_code, response.json()["quarantined"])
        assert [("no_log_line", 10_000)] == quarantine_rows(services)

    def test_a_10_mb_line_is_quarantined_not_parsed(
        self, client: TestClient, services: Services
    ) -> None:
        """A 10 MB line with an unclosed quote: quarantined (its first 64 KiB kept)."""
        huge = 'time="2026-11-27T04:52:06Z" level=info msg="' + "a" * 4_000_000
        body = "\n".join([huge, fixture_line(10), fixture_line(11)])
        response = client.post(
            "/v1/logs", content=body, headers={**LOG_AUTH, "Content-Type": "text/plain"}
        )
        assert (200, 1) == (response.status_code, response.json()["quarantined"])
        assert [("line_too_long", 1)] == quarantine_rows(services)
        assert ["mallory"] == [e.actor for e in stored(services, action="auth_failure")]


def set_read_only(postgres: PostgresDatabases, url: str, read_only: bool) -> None:
    """The database's default for new sessions, as an operator or a failover would set it;
    the sessions open now are ended so that the pool reconnects while it holds."""
    name = make_url(url).database
    with psycopg.connect(_libpq(postgres.admin_url), autocommit=True) as conn:
        if read_only:
            conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        else:
            conn.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')


class TestReadOnlyDatabase:
    def test_postgres_read_only_then_writable_recovers_without_restart(
        self, postgres_services: tuple[Services, str], postgres: PostgresDatabases
    ) -> None:
        """While read-only: intake 503 and /readyz 503. Writable again: both 200, no restart;
        every event sent is stored once."""
        services, url = postgres_services
        with TestClient(build_app(services, with_jobs=False)) as client:
            assert 200 == post(client, good(0)).status_code
            set_read_only(postgres, url, True)
            try:
                down = [post(client, good(n), apply=False).status_code for n in range(1, 4)]
                ready_while_down = client.get("/readyz").status_code
            finally:
                set_read_only(postgres, url, False)
            assert ([503] * 3, 503) == (down, ready_while_down)
            answers = [post(client, good(n)).status_code for n in range(1, 4)]
            # At most one more answer may meet a connection opened while read-only.
            assert answers[-2:] == [200, 200]
            assert 200 == client.get("/readyz").status_code
            for n in range(1, 4):
                post(client, good(n))
        assert {f"good-{n}" for n in range(4)} == {e.event_id for e in stored(services)}

    @pytest.mark.parametrize("postgres_services", ["inbox_file"], indirect=True)
    def test_with_an_inbox_file_intake_answers_through_the_outage(
        self, postgres_services: tuple[Services, str], postgres: PostgresDatabases
    ) -> None:
        """`notifications.inbox_file` set: while PostgreSQL refuses writes, intake still
        answers 200 (the bodies wait in the replica's file, and /readyz says the store is not
        ready); writable again, every event sent is stored once."""
        services, url = postgres_services
        with TestClient(build_app(services, with_jobs=False)) as client:
            assert 200 == post(client, good(0)).status_code
            set_read_only(postgres, url, True)
            try:
                during = [post(client, good(n), apply=False).status_code for n in range(1, 4)]
                ready_while_down = client.get("/readyz").status_code
                assert set() == {f"good-{n}" for n in range(1, 4)} & {
                    e.event_id for e in stored(services)
                }
            finally:
                set_read_only(postgres, url, False)
            assert ([200] * 3, 503) == (during, ready_while_down)
            deadline = time.monotonic() + 30
            while services.inbox.backlog() and time.monotonic() < deadline:
                services.applier.wake()
                services.applier.drain(1.0)
            assert 0 == services.inbox.backlog()
        assert {f"good-{n}" for n in range(4)} == {e.event_id for e in stored(services)}


def b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


READ_PATHS = (
    "/v1/events",
    "/v1/tags",
    "/v1/quarantine",
    "/v1/alerts",
    "/v1/stats/daily",
    "/v1/cleanup/plans",
)


class TestReadApiParameters:
    """Every bad parameter is a 400 naming it; none is a 500, nor a 503 counted as a store
    error."""

    @pytest.mark.parametrize(
        ("path", "query", "code"),
        [
            ("/v1/events", "limit=%C2%B2", "invalid_limit"),
            ("/v1/quarantine", "limit=%C2%B2", "invalid_limit"),
            ("/v1/events", "since=9999-12-31T23:59:59-01:00", "invalid_since"),
            ("/v1/alerts", "since=9999-12-31T23:59:59-01:00", "invalid_since"),
            ("/v1/events", "until=0001-01-05T00:00:00Z", "invalid_until"),
            ("/v1/stats/daily", "until=0001-01-05", "invalid_until"),
            ("/v1/stats/daily", "since=9999-12-31", "invalid_since"),
            ("/v1/events", "cursor=" + b64(["2026-11-27T04:52:00Z", 2**64]), "invalid_cursor"),
            ("/v1/events", "cursor=" + b64(["2026-11-27T04:52:00Z", str(2**64)]), "invalid_cursor"),
            ("/v1/alerts", "cursor=" + b64(["0001-01-01T00:00:00Z", "1"]), "invalid_cursor"),
            ("/v1/events", "cursor=" + b64(["0001-01-01T00:00:00+01:00", 1]), "invalid_cursor"),
            ("/v1/events", "cursor=" + b64(["0001-01-01T00:00:00Z", 1]), "invalid_cursor"),
            ("/v1/alerts", "cursor=" + b64(["2026-11-27T04:52:00Z", 2**63]), "invalid_cursor"),
            ("/v1/cleanup/plans", "cursor=" + b64(["0001-01-01T00:00:00Z", "x"]), "invalid_cursor"),
            ("/v1/events", "repository=%00", "invalid_repository"),
            ("/v1/tags", "repository=%00", "invalid_repository"),
            ("/v1/stats/daily", "repository=%00", "invalid_repository"),
            ("/v1/alerts", "rule=%00", "invalid_rule"),
            ("/v1/events", "actor=a%1Bb", "invalid_actor"),
            ("/v1/quarantine", "before=99999999999999999999", "invalid_before"),
            ("/v1/cleanup/plans/%00", "", "invalid_plan_id"),
        ],
    )
    def test_bad_parameter_is_400_naming_it(
        self, client: TestClient, services: Services, path: str, query: str, code: str
    ) -> None:
        response = client.get(f"{path}?{query}")
        error = response.json()["error"]
        assert (400, code) == (response.status_code, error["details"]["reason"]), response.text
        assert 0 == (
            services.metrics.registry.get_sample_value(
                "registry_monitor_store_errors_total", {"operation": "query"}
            )
            or 0
        )

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        path=st.sampled_from(READ_PATHS),
        name=st.sampled_from(
            [
                "limit",
                "cursor",
                "since",
                "until",
                "repository",
                "tag",
                "actor",
                "action",
                "before",
                "order",
                "deleted",
                "state",
                "rule",
                "x",
            ]
        ),
        value=st.one_of(
            st.text(max_size=40),
            st.integers().map(str),
            st.datetimes().map(lambda d: d.isoformat() + "Z"),
            st.lists(st.one_of(st.integers(), st.text(max_size=30)), max_size=3).map(b64),
        ),
    )
    def test_any_parameter_value_is_answered_without_5xx(
        self, client: TestClient, path: str, name: str, value: str
    ) -> None:
        """Whatever the value, the answer is 200 or a 400 naming a parameter."""
        response = client.get(path, params={name: value})
        assert response.status_code in (200, 400), (path, name, value, response.text)
        if response.status_code == 400:
            reason = response.json()["error"]["details"]["reason"]
            assert reason.startswith(("invalid_", "unknown_")), reason


HOSTILE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", categories=["Cc", "L", "N", "P", "S", "Zs"]),
    max_size=300,
)
HOSTILE_VALUE = st.one_of(
    HOSTILE_TEXT,
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.none(),
    st.booleans(),
)


class TestHostileIntakeProperties:
    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        changes=st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "id",
                        "timestamp",
                        "action",
                        "target.repository",
                        "target.tag",
                        "target.digest",
                        "target.size",
                        "target.mediaType",
                        "actor.name",
                        "request.useragent",
                        "request.addr",
                        "request.method",
                        "source.instanceID",
                    ]
                ),
                HOSTILE_VALUE,
            ),
            min_size=1,
            max_size=4,
        ),
    )
    def test_every_event_is_stored_or_quarantined_and_the_answer_is_200(
        self, client: TestClient, services: Services, changes: list[tuple[str, object]]
    ) -> None:
        """A valid event and one with hostile fields: 200, and each is stored (now or by an
        earlier example: a duplicate) or quarantined."""
        hostile: dict[str, Any] = json.loads(json.dumps(push_event(id="hostile")))
        for path, value in changes:
            parts = path.split(".")
            holder = hostile
            for part in parts[:-1]:
                holder = holder[part]
            holder[parts[-1]] = value
        quarantined_before = sum(count for _reason, count in quarantine_rows(services))
        response = post(client, good(1), hostile)
        assert 200 == response.status_code, response.text
        quarantined = sum(count for _reason, count in quarantine_rows(services))
        ids = {e.event_id for e in stored(services)}
        assert "good-1" in ids
        event_id = hostile["id"]  # the hostile value itself when "id" was changed
        assert (isinstance(event_id, str) and event_id in ids) or (
            quarantined == quarantined_before + 1
        )

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(lines=st.lists(HOSTILE_TEXT, min_size=1, max_size=20), prefix=st.integers(0, 3))
    def test_hostile_log_lines_are_answered_200(
        self, client: TestClient, lines: list[str], prefix: int
    ) -> None:
        """Any text, also behind a real line's head, is parsed or quarantined: 200."""
        head = fixture_line(10)[: (0, 40, 90, 200)[prefix]]
        body = "\n".join(head + line for line in lines)
        response = client.post(
            "/v1/logs", content=body.encode(), headers={**LOG_AUTH, "Content-Type": "text/plain"}
        )
        assert 200 == response.status_code, response.text
