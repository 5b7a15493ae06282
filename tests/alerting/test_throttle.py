from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerting.throttle import (
    Budget,
    Decision,
    Suppressed,
    decide,
    hour_window,
    plan_digests,
)
from monitor.alerts import Digest
from tests.alerting.factories import make_alert

H = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return H + timedelta(minutes=minutes)


class TestHourWindow:
    @pytest.mark.parametrize(
        ("now", "expected"),
        [
            (at(0), (H, at(60))),
            (at(59.99), (H, at(60))),
            (at(60), (at(60), at(120))),
            (datetime(2026, 11, 27, 5, 30, tzinfo=UTC).astimezone().replace(), (at(60), at(120))),
        ],
    )
    def test_is_the_utc_clock_hour(
        self, now: datetime, expected: tuple[datetime, datetime]
    ) -> None:
        """The window is the UTC clock hour containing `now`, whatever zone `now` is in."""
        assert expected == hour_window(now)


class TestDecide:
    @pytest.mark.parametrize(
        ("sent_minutes", "now_minutes", "budget", "send", "remaining"),
        [
            ([], 10, 3, True, 3),
            ([1, 2], 10, 3, True, 1),
            ([1, 2, 3], 10, 3, False, 0),
            ([1, 2, 3, 4], 10, 3, False, 0),
            ([-5, -1, 1], 10, 3, True, 2),  # sends of the previous hour do not count
            ([1, 2, 3], 61, 3, True, 3),  # a new hour, a new budget
            ([], 10, 0, False, 0),  # a zero budget sends everything to the digest
        ],
    )
    def test_table(
        self, sent_minutes: list[int], now_minutes: int, budget: int, send: bool, remaining: int
    ) -> None:
        """Sends in the current hour are counted against the budget; the rest is suppressed."""
        start, end = hour_window(at(now_minutes))
        expected = Decision(send=send, window_start=start, window_end=end, remaining=remaining)
        assert expected == decide([at(m) for m in sent_minutes], at(now_minutes), budget)


class TestBudget:
    def test_per_rule_overrides_the_default(self) -> None:
        """A rule named in `per_rule` gets its own budget; others get `per_hour`."""
        budget = Budget(per_hour=5, per_rule={"mass_pull": 1})
        expected = (1, 5)
        assert expected == (budget.for_rule("mass_pull"), budget.for_rule("brute_force"))

    def test_negative_budget_is_rejected(self) -> None:
        """A negative budget is a configuration mistake."""
        with pytest.raises(ValueError, match="negative"):
            Budget(per_hour=-1)


class TestPlanDigests:
    def test_one_digest_per_rule_and_ended_hour(self) -> None:
        """Ended hours give one digest per rule, oldest first; the running hour waits."""
        a1, a2 = make_alert(rule="a", fingerprint="a1"), make_alert(rule="a", fingerprint="a2")
        b1, a3 = make_alert(rule="b", fingerprint="b1"), make_alert(rule="a", fingerprint="a3")
        suppressed = [
            Suppressed(a1, H),
            Suppressed(b1, H),
            Suppressed(a2, H),
            Suppressed(a3, at(60)),
        ]
        expected = [
            Digest("a", H, at(60), (a1, a2)),
            Digest("b", H, at(60), (b1,)),
        ]
        assert expected == plan_digests(suppressed, at(90))

    def test_nothing_before_the_hour_ends(self) -> None:
        """Alerts of the running hour are not digested yet."""
        expected: list[Digest] = []
        assert expected == plan_digests([Suppressed(make_alert(), H)], at(59))
