from __future__ import annotations

from datetime import timedelta

from monitor.cleanup.model import TagRef
from monitor.cleanup.plan import Decision, Plan, Reason, TagDecision, diff_plans
from tests.cleanup.factories import NOW


def decision(tag: str, kind: Decision, reason: Reason, detail: str = "") -> TagDecision:
    return TagDecision("team/app", tag, "sha256:" + "0" * 64, kind, reason, "p", detail)


def make(*decisions: TagDecision) -> Plan:
    return Plan(NOW, decisions, (), 0)


class TestDiffPlans:
    def test_new_and_dropped_selections(self) -> None:
        """Tags selected only now are new; tags selected only before are no longer selected."""
        before = make(
            decision("a", Decision.DELETE, Reason.DELETE_RULE, "r1"),
            decision("b", Decision.DELETE, Reason.DELETE_RULE, "r1"),
        )
        after = make(
            decision("b", Decision.DELETE, Reason.DELETE_RULE, "r2"),
            decision("c", Decision.DELETE, Reason.DELETE_RULE, "r1"),
            decision("a", Decision.KEEP, Reason.KEEP_PULLED_WITHIN),
        )
        diff = diff_plans(before, after)
        expected = (
            (TagRef("team/app", "c"),),
            (TagRef("team/app", "a"),),
            ((TagRef("team/app", "b"), Reason.DELETE_RULE, Reason.DELETE_RULE),),
        )
        assert expected == (diff.newly_selected, diff.no_longer_selected, diff.changed_reason)

    def test_no_previous_plan(self) -> None:
        """Without a previous plan every selected tag is new."""
        diff = diff_plans(None, make(decision("a", Decision.DELETE, Reason.DELETE_RULE)))
        expected = ((TagRef("team/app", "a"),), ())
        assert expected == (diff.newly_selected, diff.no_longer_selected)


class TestPlan:
    def test_text_names_the_reason(self) -> None:
        """The human text is built from the reason code and its detail."""
        d = decision("a", Decision.UNKNOWN, Reason.COVERAGE_GAP, "30 days")
        expected = "unknown, kept: the monitor was not listening for all of 30 days"
        assert expected == d.text

    def test_plan_id_depends_on_actions_and_time(self) -> None:
        """Two plans made at different times have different ids; the same plan keeps its id."""
        first, second = make(), Plan(NOW + timedelta(seconds=1), (), (), 0)
        expected = (True, False)
        assert expected == (first.plan_id == make().plan_id, first.plan_id == second.plan_id)

    def test_counts(self) -> None:
        """Counts per decision cover every decision kind."""
        plan = make(decision("a", Decision.DELETE, Reason.DELETE_RULE))
        expected = {"delete": 1, "keep": 0, "protected": 0, "unknown": 0}
        assert expected == plan.counts()
