"""Keyset pages: every list walks its rows once, in order, with an opaque cursor."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from monitor.cleanup.plan import DigestAction, Plan, Reason
from monitor.errors import InvalidQuery
from monitor.runtime import Services
from monitor.store.cleanup_plans import latest_summary, query_plans, save_plan
from monitor.store.pages import decode_cursor, encode_cursor

T0 = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)


def plan(at: datetime, repository: str) -> Plan:
    action = DigestAction(repository, "sha256:" + "a" * 64, ("old",), Reason.DELETE_RULE, "p")
    return Plan(created_at=at, decisions=(), actions=(action,), bytes_freed=0)


@pytest.fixture
def plans(services: Services) -> list[str]:
    """Seven plans, three of them created in the same second: ids newest first, ties by id."""
    made = [plan(T0 + timedelta(minutes=n // 3), f"team/app{n}") for n in range(7)]
    with services.session_factory() as session, session.begin():
        for p in made:
            save_plan(session, p, policy_digest="d")
    ordered = sorted(made, key=lambda p: (p.created_at, p.plan_id), reverse=True)
    return [p.plan_id for p in ordered]


class TestPlanPages:
    @pytest.mark.parametrize("limit", [1, 2, 3, 7, 8])
    def test_pages_walk_every_plan_once_newest_first(
        self, services: Services, plans: list[str], limit: int
    ) -> None:
        """Following next_cursor yields every plan once, in order; the last page has no cursor."""
        seen: list[str] = []
        pages = 0
        cursor: str | None = None
        with services.session_factory() as session:
            while True:
                items, cursor = query_plans(session, limit=limit, cursor=cursor)
                seen.extend(p.id for p in items)
                pages += 1
                if cursor is None:
                    break
        assert (plans, -(-7 // limit)) == (seen, pages)

    def test_latest_summary_before_one_is_the_next_older(
        self, services: Services, plans: list[str]
    ) -> None:
        """latest_summary(before=id) steps through the same order as the pages."""
        with services.session_factory() as session:
            found = [latest_summary(session)]
            while (last := found[-1]) is not None:
                found.append(latest_summary(session, before=last.id))
        assert plans == [f.id for f in found if f is not None]


class TestCursors:
    def test_round_trip(self) -> None:
        """A cursor gives back the time and key it was made of."""
        assert (T0, 41) == decode_cursor(encode_cursor(T0, 41))
        assert (T0, "ab12") == decode_cursor(encode_cursor(T0, "ab12"), str)

    @pytest.mark.parametrize(
        "parts",
        [
            ["2026-11-27T04:00:00Z", "x41"],
            ["2026-11-27T04:00:00Z", 41],
            ["2026-11-27", "41"],
            ["2026-11-27T04:00:00Z"],
        ],
    )
    def test_a_key_or_time_of_the_wrong_kind_is_refused(self, parts: list[object]) -> None:
        """A cursor whose key is not an id, whose time is not RFC 3339, or with a part missing is
        refused."""
        raw = base64.urlsafe_b64encode(orjson.dumps(parts)).decode()
        with pytest.raises(InvalidQuery):
            decode_cursor(raw)
