from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from monitor.api.app import create_app
from monitor.pipeline.detection import detect_once
from monitor.runtime import Services
from tests.pipeline.support import Clock, post_scenario, start_services, stop_services


@pytest.fixture
def scenario(db_url: str, tmp_path: Path) -> Iterator[Services]:
    """The capture posted and detected; the read API needs the token `r3ad`."""
    clock = Clock()
    services = start_services(db_url, tmp_path, clock, REGISTRY_MONITOR_API_TOKEN="r3ad")
    post_scenario(services)
    clock.advance(5)
    detect_once(services)
    try:
        yield services
    finally:
        stop_services(services)


@pytest.fixture
def client(scenario: Services) -> Iterator[TestClient]:
    with TestClient(create_app(scenario), headers={"Authorization": "Bearer r3ad"}) as c:
        yield c


class TestAlertsApi:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            ("", ["delete_outside_cleanup", "out_of_role", "off_hours_write"]),
            ("?mode=shadow", ["off_hours_write"]),
            ("?severity=critical", ["out_of_role"]),
            ("?rule=delete_outside_cleanup&state=firing", ["delete_outside_cleanup"]),
            ("?state=resolved", []),
            ("?until=2026-11-27T04:52:00Z", []),
            ("?since=2026-11-27T04:52:00Z&mode=alert", ["delete_outside_cleanup", "out_of_role"]),
        ],
    )
    def test_filters(self, client, query, expected):
        """Each filter narrows the list, most recently seen first."""
        response = client.get("/v1/alerts" + query)
        assert expected == [item["rule"] for item in response.json()["items"]]

    def test_pages_follow_the_cursor(self, client):
        """limit=1 pages through every alert once, then next_cursor is null."""
        rules, cursor = [], ""
        for _ in range(10):
            body = client.get("/v1/alerts", params={"limit": "1", "cursor": cursor}).json()
            rules += [item["rule"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert ["delete_outside_cleanup", "out_of_role", "off_hours_write"] == rules

    def test_item_shape(self, client):
        """An item carries the stored alert with its subject, evidence and times."""
        item = client.get("/v1/alerts", params={"rule": "delete_outside_cleanup"}).json()
        alert = item["items"][0]
        expected = (
            {"actor": "alice", "repository": "library/hello"},
            3,
            "firing",
            None,
            3,
        )
        actual = (
            alert["subject"],
            alert["count"],
            alert["state"],
            alert["resolved_at"],
            len(alert["evidence"]),
        )
        assert expected == actual

    @pytest.mark.parametrize(
        ("query", "code"),
        [
            ("?state=open", "invalid_state"),
            ("?limit=0", "invalid_limit"),
            ("?x=1", "unknown_parameter"),
            ("?cursor=nope", "invalid_cursor"),
            ("?since=yesterday", "invalid_since"),
            ("?until=0001-01-01T00:30:00%2B01:00", "invalid_until"),
        ],
    )
    def test_bad_queries_are_400(self, client, query, code):
        """A bad parameter answers 400 with the error code naming it."""
        response = client.get("/v1/alerts" + query)
        error = response.json()["error"]
        assert (400, code) == (response.status_code, error["details"]["reason"])

    def test_needs_the_read_token(self, scenario):
        """Without the read token: 401, as for /v1/events."""
        with TestClient(create_app(scenario)) as anonymous:
            assert 401 == anonymous.get("/v1/alerts").status_code
