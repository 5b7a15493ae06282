"""Registry logs into the store: backfill, following with checkpoints, shipped batches."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from monitor.ingest.tailer import Follower, read_lines
from monitor.main import build_app
from monitor.pipeline.log_ingest import FollowJob, LineLimits, backfill
from monitor.runtime import Services
from monitor.store.checkpoints import StoreCheckpoints
from monitor.store.events import EventFilter, query_events
from tests.conftest import store_refusing
from tests.paths import fixtures

LOGS = ("registry-text.log", "registry-json.log")


def fixture_lines(name: str) -> list[str]:
    return (fixtures() / name).read_text().splitlines()


def failures(services: Services) -> Counter[str | None]:
    with services.session_factory() as session:
        page, _ = query_events(session, where=EventFilter(action="auth_failure"), limit=1000)
    return Counter(e.event.actor for e in page)


def sample(services: Services, name: str) -> float | None:
    value = services.metrics.registry.get_sample_value(name)
    return value


def follow_job(services: Services, path: Path) -> FollowJob:
    return FollowJob(
        Follower([str(path)], StoreCheckpoints(services.session_factory)),
        writer=services.writer,
        metrics=services.metrics,
        limits=LineLimits(services.clock),
    )


class TestBackfill:
    @pytest.mark.parametrize("name", LOGS)
    def test_failed_logins_from_the_captured_log(self, services: Services, name: str) -> None:
        """3 failed logins by mallory and 1 by bob; 20 anonymous challenges only counted."""
        backfill(fixture_lines(name), writer=services.writer, metrics=services.metrics)
        assert Counter({"mallory": 3, "bob": 1}) == failures(services)
        assert 20 == sample(services, "registry_monitor_anonymous_challenges_total")
        assert 4 == sample(services, "registry_monitor_auth_failures_total")
        assert 310 == sum(
            services.metrics.registry.get_sample_value(
                "registry_monitor_log_lines_total", {"result": r}
            )
            or 0
            for r in ("parsed", "ignored", "malformed")
        )

    def test_ingesting_a_file_twice_adds_nothing(self, services: Services) -> None:
        """The second run finds every event already stored."""
        first = backfill(
            fixture_lines("registry-text.log"), writer=services.writer, metrics=services.metrics
        )
        second = backfill(
            fixture_lines("registry-text.log"), writer=services.writer, metrics=services.metrics
        )
        assert (11, 0) == (first.stored, first.duplicates)
        assert (0, 11) == (second.stored, second.duplicates)

    def test_failed_logins_read_again_are_not_counted_again(self, services: Services) -> None:
        """auth_failures_total counts stored events: a re-read file (which would otherwise trip
        RegistryMonitorAuthFailureBurst) adds nothing; anonymous challenges are per line read."""
        for _ in range(3):
            backfill(
                fixture_lines("registry-text.log"), writer=services.writer, metrics=services.metrics
            )
        assert (4, 4, 60) == (
            len(list(failures(services).elements())),
            sample(services, "registry_monitor_auth_failures_total"),
            sample(services, "registry_monitor_anonymous_challenges_total"),
        )

    def test_registry_responses_by_status_class_and_route(self, services: Services) -> None:
        """Access lines are counted by status class and route kind."""
        backfill(
            fixture_lines("registry-text.log"), writer=services.writer, metrics=services.metrics
        )
        get = services.metrics.registry.get_sample_value
        routes = ("base", "manifest", "blob", "upload", "tags", "catalog", "other")

        def total(status_class: str) -> float:
            labels = [{"status_class": status_class, "route": r} for r in routes]
            return sum(get("registry_monitor_registry_responses_total", x) or 0 for x in labels)

        assert (65, 43) == (total("2xx"), total("4xx"))
        # 24 401s: 23 on GET /v2/ and one anonymous manifest GET (step 21)
        assert 23 == get(
            "registry_monitor_registry_responses_total", {"status_class": "4xx", "route": "base"}
        )


class TestFollow:
    def test_a_restart_mid_file_neither_loses_nor_repeats(
        self, services: Services, tmp_path: Path
    ) -> None:
        """The checkpoint is committed with the events: a new follower resumes after it."""
        lines = fixture_lines("registry-text.log")
        log = tmp_path / "registry.log"
        log.write_text("\n".join(lines[:100]) + "\n")
        first = follow_job(services, log)
        assert first.poll_once()
        first.close()
        with log.open("a") as out:
            out.write("\n".join(lines[100:]) + "\n")
        second = follow_job(services, log)
        while second.poll_once():
            pass
        second.close()
        assert (100, 210) == (first.totals.lines, second.totals.lines)
        assert 0 == first.totals.duplicates + second.totals.duplicates
        assert Counter({"mallory": 3, "bob": 1}) == failures(services)

    def test_a_partial_last_line_waits_for_its_newline(
        self, services: Services, tmp_path: Path
    ) -> None:
        """Half a line is not read until the rest of it is written."""
        lines = fixture_lines("registry-text.log")
        log = tmp_path / "registry.log"
        log.write_text("\n".join(lines[:10]) + "\n" + lines[10][:20])
        job = follow_job(services, log)
        job.poll_once()
        assert 10 == job.totals.lines
        with log.open("a") as out:
            out.write(lines[10][20:] + "\n")
        job.poll_once()
        job.close()
        assert 11 == job.totals.lines


class TestNeverStuck:
    def test_a_batch_the_store_refuses_is_split_and_the_follower_moves_on(
        self, services: Services, tmp_path: Path
    ) -> None:
        """The store refuses bob's failed login: it is quarantined, mallory's are stored, the
        checkpoint moves past the file, and a new follower finds nothing left to read."""
        with store_refusing(services.engine, "actor", "bob"):
            log = tmp_path / "registry.log"
            log.write_text("\n".join(fixture_lines("registry-text.log")) + "\n")
            job = follow_job(services, log)
            for _ in range(100):
                if not job.poll_once():
                    break
            job.close()
            assert 310 == job.totals.lines
            assert job.totals.quarantined >= 1  # bob's failed login, and his other requests
            assert Counter({"mallory": 3}) == failures(services)
            again = follow_job(services, log)
            again.poll_once()
            again.close()
            assert 0 == again.totals.lines

    def test_a_10_mb_line_with_an_unclosed_quote_is_quarantined_and_ingestion_finishes(
        self, services: Services, tmp_path: Path
    ) -> None:
        """`ingest-log` of a file holding a 10 MB line: the line is quarantined (in the 1 MiB
        pieces the reader cuts it into), every other line is ingested."""
        lines = fixture_lines("registry-text.log")
        log = tmp_path / "registry.log"
        huge = 'time="2026-11-27T04:52:06Z" level=info msg="' + "a" * 10_000_000
        log.write_text("\n".join([*lines[:50], huge, *lines[50:]]) + "\n")
        with log.open("rb") as stream:
            totals = backfill(read_lines(stream), writer=services.writer, metrics=services.metrics)
        assert totals.quarantined >= 1
        assert Counter({"mallory": 3, "bob": 1}) == failures(services)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(build_app(services, with_jobs=False)) as test_client:
        yield test_client


AUTH = {"Authorization": "Bearer s3cret"}


class TestShippedLogs:
    @pytest.mark.parametrize(
        ("shape", "content_type"),
        [
            ("fluent-bit", "application/x-ndjson"),
            ("vector", "application/x-ndjson"),
            ("array", "application/json"),
            ("text", "text/plain"),
        ],
    )
    def test_shipper_formats(
        self, client: TestClient, services: Services, shape: str, content_type: str
    ) -> None:
        """Fluent Bit's `log`, Vector's `message`, a JSON array and plain text give the same events."""
        lines = fixture_lines("registry-text.log")
        if shape == "fluent-bit":
            body = "\n".join(
                json.dumps(
                    {
                        "date": 1795756326.5,
                        "container_id": "4f1c0a",
                        "container_name": "/registry",
                        "source": "stdout" if line[:1].isdigit() else "stderr",
                        "log": line,
                    }
                )
                for line in lines
            )
        elif shape == "vector":
            body = "\n".join(json.dumps({"message": line, "host": "vm"}) for line in lines)
        elif shape == "array":
            body = json.dumps([{"log": line} for line in lines])
        else:
            body = "\n".join(lines)
        response = client.post(
            "/v1/logs", content=body, headers={**AUTH, "Content-Type": content_type}
        )
        assert {"lines": 310, "accepted": 11, "duplicates": 0, "quarantined": 0} == response.json()
        assert Counter({"mallory": 3, "bob": 1}) == failures(services)

    def test_parsed_logrus_records(self, client: TestClient, services: Services) -> None:
        """A shipper that parsed the registry's JSON lines sends the objects; they are read back."""
        body = "\n".join(fixture_lines("registry-json.log"))
        assert (
            11
            == client.post(
                "/v1/logs", content=body, headers={**AUTH, "Content-Type": "application/x-ndjson"}
            ).json()["accepted"]
        )

    def test_token_and_quarantine(self, client: TestClient) -> None:
        """No token is 401; the records without a log line are quarantined in one row that
        counts them, the rest accepted."""
        assert 401 == client.post("/v1/logs", content=b"{}").status_code
        body = (
            json.dumps({"log": fixture_lines("registry-text.log")[7]})
            + "\n"
            + json.dumps({"other": 1})
            + "\nnot json"
        )
        answer = client.post("/v1/logs", content=body, headers=AUTH).json()
        assert (1, 2) == (answer["lines"], answer["quarantined"])
        (row,) = client.get("/v1/quarantine").json()["items"]
        assert ("several", 2) == (row["reason"], row["count"])
        assert "no_log_line" in row["message"] and "invalid_json" in row["message"]
