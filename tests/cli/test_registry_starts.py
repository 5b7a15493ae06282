"""Registry restarts made visible: each start seen in the captured logs of 2.8.2 and 3.1.1 (text
and JSON runs) is a row of `GET /v1/registry/starts` and `registry-monitor registry-starts`, and
counts in `registry_monitor_registry_starts_total`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from monitor.cli import main
from monitor.events import format_timestamp
from monitor.ingest.logclassify import LogClassifier
from monitor.ingest.requestlog import RegistryStart
from monitor.main import build_app
from monitor.pipeline.log_ingest import backfill
from monitor.runtime import Services
from tests.request_captures import RUNS, log_lines


def starts_in_captures() -> list[RegistryStart]:
    """The `listening on` lines of the four captured runs, newest first."""
    found: list[RegistryStart] = []
    for version, log, _run in RUNS:
        classifier = LogClassifier()
        classifier.feed_many(log_lines(version, log))
        found.extend(classifier.take_records()[1])
    return sorted(found, key=lambda s: (s.started_at, s.instance), reverse=True)


@pytest.fixture
def logged(services: Services) -> Services:
    """Every captured log ingested, twice (a replay records no start again)."""
    for _ in range(2):
        for version, log, _run in RUNS:
            backfill(log_lines(version, log), writer=services.writer, metrics=services.metrics)
    return services


def as_json(start: RegistryStart) -> dict[str, str | None]:
    return {
        "instance": start.instance,
        "started_at": format_timestamp(start.started_at),
        "version": start.version,
    }


class TestRegistryStarts:
    def test_the_metrics_count_the_starts_and_date_the_newest(self, services: Services) -> None:
        """An empty store exports 0 starts and no newest start; after the four runs, 4 and the
        time of the 3.1 JSON run's start, read from the store at scrape time."""
        value = services.metrics.registry.get_sample_value
        empty = (
            value("registry_monitor_registry_starts_total"),
            value("registry_monitor_registry_last_start_timestamp_seconds"),
        )
        for version, log, _run in RUNS:
            backfill(log_lines(version, log), writer=services.writer, metrics=services.metrics)
        newest = starts_in_captures()[0]
        assert ((0.0, None), (4.0, newest.started_at.timestamp())) == (
            empty,
            (
                value("registry_monitor_registry_starts_total"),
                value("registry_monitor_registry_last_start_timestamp_seconds"),
            ),
        )

    def test_the_api_lists_them_newest_first_in_pages(self, logged: Services) -> None:
        """`limit=3` gives three starts and a cursor; the next page the last one, no cursor."""
        with TestClient(build_app(logged, with_jobs=False)) as client:
            first = client.get("/v1/registry/starts", params={"limit": "3"}).json()
            second = client.get(
                "/v1/registry/starts", params={"limit": "3", "cursor": first["next_cursor"]}
            ).json()
            unknown = client.get("/v1/registry/starts", params={"since": "x"})
        assert [as_json(s) for s in starts_in_captures()] == first["items"] + second["items"]
        assert (3, 1, None) == (len(first["items"]), len(second["items"]), second["next_cursor"])
        assert 400 == unknown.status_code

    def test_the_command_prints_them(
        self, capsys: pytest.CaptureFixture[str], db_url: str, logged: Services
    ) -> None:
        """`registry-starts --json` is the API's page; the table names instance and version."""
        environ = {
            "REGISTRY_MONITOR_DATABASE_URL": db_url,
            "REGISTRY_MONITOR_LOGGING_LEVEL": "error",
        }
        assert 0 == main(["registry-starts", "--json"], environ)
        document = json.loads(capsys.readouterr().out)
        assert 0 == main(["registry-starts", "--limit", "1"], environ)
        table = capsys.readouterr().out
        newest = starts_in_captures()[0]
        assert [as_json(s) for s in starts_in_captures()] == document["items"]
        assert newest.instance in table and str(newest.version) in table
        assert "more: --cursor" in table
