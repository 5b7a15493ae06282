"""GET /v1/cleanup/plans/{id} gives a plan's summary and the first page of its decisions,
actions and journal; `/decisions`, `/actions` and `/journal` page on from `next_cursors`, and
following them gives the whole stored plan and journal, on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from monitor.cleanup.journal import JournalEntry, Outcome
from monitor.cleanup.plan import Plan
from monitor.main import build_app
from monitor.runtime import Services
from monitor.store.cleanup_plans import load_plan, save_plan
from monitor.store.journal import list_journal, record_entry
from tests.api.test_read_pages import walk
from tests.cleanup.factories import NOW
from tests.cleanup.test_plan_pages import BIG
from tests.store.test_plan_storage import make_plan

PARTS = ("decisions", "actions", "journal")


def store(services: Services, plan: Plan, journal: int = 0) -> str:
    """`plan` stored, with `journal` rows of its first actions deleted."""
    with services.session_factory() as session, session.begin():
        plan_id = save_plan(session, plan, policy_digest="p").id
        for n, action in enumerate(plan.actions[:journal]):
            at = NOW + timedelta(seconds=n)
            entry = JournalEntry(
                plan_id, action.repository, action.digest, action.tags, Outcome.DELETED, "x", at
            )
            record_entry(session, entry)
    return plan_id


def stored(services: Services, plan_id: str) -> dict[str, list[dict[str, Any]]]:
    """What the whole plan and its journal show, read without the API."""
    with services.session_factory() as session:
        _, plan = load_plan(session, plan_id)
        journal = [row.to_dict() for row in list_journal(session, plan_id=plan_id)]
    return {**{k: plan.to_dict()[k] for k in PARTS[:2]}, "journal": journal}


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(build_app(services, with_jobs=False)) as test_client:
        yield test_client


class TestPlanDetail:
    def test_first_pages_and_their_cursors(self, client: TestClient, services: Services) -> None:
        """With limit=10, each part holds its first 10 items and the cursor of the next; the
        summary's count of actions is `action_count` (`actions` is the first page of them)."""
        plan_id = store(services, BIG, journal=12)
        body = client.get(f"/v1/cleanup/plans/{plan_id}", params={"limit": "10"}).json()
        whole = stored(services, plan_id)
        assert (
            (
                plan_id,
                "planned",
                2002,
                {"delete": 1503, "keep": 1000, "protected": 0, "unknown": 0},
            ),
            {part: whole[part][:10] for part in PARTS},
            [True, True, True],
        ) == (
            (body["id"], body["state"], body["action_count"], body["counts"]),
            {part: body[part] for part in PARTS},
            [isinstance(body["next_cursors"][part], str) for part in PARTS],
        )

    def test_a_small_plan_is_whole_on_its_first_page(
        self, client: TestClient, services: Services
    ) -> None:
        """A plan of fewer than 100 items in each part shows them all, with no next cursor."""
        plan_id = store(services, make_plan(1), journal=1)
        body = client.get(f"/v1/cleanup/plans/{plan_id}").json()
        whole = stored(services, plan_id)
        assert ({p: whole[p] for p in PARTS}, dict.fromkeys(PARTS)) == (
            {p: body[p] for p in PARTS},
            body["next_cursors"],
        )

    @pytest.mark.parametrize(
        ("part", "limit"), [("decisions", "1000"), ("actions", "700"), ("journal", "5")]
    )
    def test_pages_followed_give_the_whole_part(
        self, client: TestClient, services: Services, part: str, limit: str
    ) -> None:
        plan_id = store(services, BIG, journal=12)
        pages = walk(client, f"/v1/cleanup/plans/{plan_id}/{part}", {"limit": limit})
        assert stored(services, plan_id)[part] == [item for page in pages for item in page]

    def test_unknown_plan_is_404_in_every_part(self, client: TestClient) -> None:
        codes = [
            client.get(f"/v1/cleanup/plans/nope{suffix}").status_code
            for suffix in ("", "/decisions", "/actions", "/journal")
        ]
        assert [404] * 4 == codes

    @pytest.mark.parametrize(
        ("part", "params", "code"),
        [
            ("actions", {"cursor": "decisions"}, "invalid_cursor"),
            ("decisions", {"cursor": "not-a-cursor"}, "invalid_cursor"),
            ("journal", {"limit": "0"}, "invalid_limit"),
            ("decisions", {"page": "2"}, "unknown_parameter"),
        ],
    )
    def test_bad_paging_is_400(
        self, client: TestClient, services: Services, part: str, params: dict[str, str], code: str
    ) -> None:
        """A cursor of another part is not one this part issued."""
        plan_id = store(services, BIG)
        if params.get("cursor") == "decisions":
            first = client.get(f"/v1/cleanup/plans/{plan_id}", params={"limit": "1"}).json()
            params = {"cursor": first["next_cursors"]["decisions"]}
        answer = client.get(f"/v1/cleanup/plans/{plan_id}/{part}", params=params)
        assert (400, code) == (answer.status_code, answer.json()["error"]["details"]["reason"])
