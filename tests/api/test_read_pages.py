"""GET /v1/tags and /v1/stats/daily page like /v1/events: `limit`, an opaque `cursor`, and
`{"items", "next_cursor"}`; following the cursors visits every item once, in order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from monitor.main import build_app
from monitor.runtime import Services
from monitor.store.tags import list_tags
from tests.fixture_events import scenario_events

DAY_RANGE = {"since": "2026-11-26", "until": "2026-11-29"}


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    services.writer.submit(scenario_events()).result(timeout=30)
    with TestClient(build_app(services, with_jobs=False)) as test_client:
        yield test_client


def walk(client: TestClient, path: str, params: dict[str, str]) -> list[list[dict[str, Any]]]:
    """Every page from the first to the one without a next_cursor (bounded)."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    for _ in range(100):
        answer = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert 200 == answer.status_code, answer.text
        body = answer.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("paging did not end")


class TestTagPages:
    def test_pages_visit_every_tag_once_in_order(
        self, client: TestClient, services: Services
    ) -> None:
        """limit=2 walks the tags in (repository, tag) order, two at a time, ending with null."""
        with services.session_factory() as session:
            every = [(t.repository, t.tag) for t in list_tags(session)]
        pages = walk(client, "/v1/tags", {"limit": "2"})
        seen = [(i["repository"], i["tag"]) for page in pages for i in page]
        assert (every, True) == (seen, all(1 <= len(p) <= 2 for p in pages))
        assert len(every) > 4

    def test_filters_hold_across_pages(self, client: TestClient, services: Services) -> None:
        """A repository and deleted=false keep applying on every page."""
        with services.session_factory() as session:
            live = [
                t.tag for t in list_tags(session, repository="library/hello", include_deleted=False)
            ]
        params = {"limit": "1", "repository": "library/hello", "deleted": "false"}
        pages = walk(client, "/v1/tags", params)
        assert live == [i["tag"] for page in pages for i in page]

    def test_default_page_holds_up_to_100(self, client: TestClient) -> None:
        """Without limit a page holds at most 100 tags; the capture has fewer, so one page."""
        body = client.get("/v1/tags").json()
        assert (True, None) == (0 < len(body["items"]) <= 100, body["next_cursor"])

    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({"cursor": "not-a-cursor"}, "invalid_cursor"),
            ({"cursor": "WyJvbmx5LW9uZSJd"}, "invalid_cursor"),  # ["only-one"]
            ({"limit": "0"}, "invalid_limit"),
            ({"limit": "1001"}, "invalid_limit"),
            ({"page": "2"}, "unknown_parameter"),
        ],
    )
    def test_bad_paging_is_400(self, client: TestClient, params: dict[str, str], code: str) -> None:
        answer = client.get("/v1/tags", params=params)
        assert (400, code) == (answer.status_code, answer.json()["error"]["details"]["reason"])


class TestDailyPages:
    def test_pages_visit_every_count_once_in_order(self, client: TestClient) -> None:
        """limit=3 walks the same counts as one large page, in (day, repository, action,
        client) order."""
        (whole,) = walk(client, "/v1/stats/daily", {**DAY_RANGE, "limit": "1000"})
        pages = walk(client, "/v1/stats/daily", {**DAY_RANGE, "limit": "3"})
        assert whole == [i for page in pages for i in page]
        assert (len(pages), True) == (-(-len(whole) // 3), all(len(p) <= 3 for p in pages))
        keys = [(i["day"], i["repository"] or "", i["action"], i["client"]) for i in whole]
        assert sorted(keys) == keys

    def test_repository_filter_holds_across_pages(self, client: TestClient) -> None:
        pages = walk(
            client, "/v1/stats/daily", {**DAY_RANGE, "repository": "team/app", "limit": "2"}
        )
        items = [i for page in pages for i in page]
        assert ({"team/app"}, True) == ({i["repository"] for i in items}, len(pages) > 1)

    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({"cursor": "bm9wZQ"}, "invalid_cursor"),
            ({"cursor": "WyJub3QtYS1kYXkiLCJhIiwiYiIsImMiXQ"}, "invalid_cursor"),
            ({"limit": "x"}, "invalid_limit"),
            ({"limits": "3"}, "unknown_parameter"),
        ],
    )
    def test_bad_paging_is_400(self, client: TestClient, params: dict[str, str], code: str) -> None:
        answer = client.get("/v1/stats/daily", params=params)
        assert (400, code) == (answer.status_code, answer.json()["error"]["details"]["reason"])
