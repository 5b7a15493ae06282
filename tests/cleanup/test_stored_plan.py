"""The stored form of a plan gives back the plan the planner made, and refuses what it is not."""

from __future__ import annotations

import zlib

import orjson
import pytest
from hypothesis import given, settings

from monitor.cleanup.plan import Decision, Plan, Reason, TagDecision
from monitor.cleanup.planner import plan
from monitor.cleanup.stored_plan import canonical, decode, encode
from monitor.errors import ParseError
from tests.cleanup.factories import NOW
from tests.cleanup.test_planner_properties import FULL, policies, registries


class TestStoredPlan:
    @settings(max_examples=150, deadline=None)
    @given(registry=registries(), chosen=policies())
    def test_planner_plans_round_trip_exactly(self, registry, chosen) -> None:
        """Every decision (digest, reason, policy, detail), action, time and size comes back."""
        tags, manifests = registry
        made = plan(chosen, tags, manifests, FULL, NOW)
        assert made == decode(encode(made))

    def test_decisions_come_back_in_planner_order(self) -> None:
        """Decisions given out of order come back per repository (first seen) in tag order."""
        decisions = tuple(
            TagDecision(repo, tag, "sha256:" + "ab" * 32, Decision.KEEP, Reason.PINNED, "p", "v*")
            for repo, tag in [("b/x", "v2"), ("a/y", "z"), ("b/x", "v1"), ("a/y", "a")]
        )
        given_plan = Plan(NOW, decisions, (), 0)
        expected = [("b/x", "v1"), ("b/x", "v2"), ("a/y", "a"), ("a/y", "z")]
        decoded = decode(encode(given_plan))
        assert (expected, canonical(given_plan)) == (
            [(d.repository, d.tag) for d in decoded.decisions],
            decoded,
        )

    def test_digest_without_the_usual_algorithm_is_kept_verbatim(self) -> None:
        """A digest not in sha256: form is stored as given."""
        decision = TagDecision("a/b", "t", "sha512:" + "c" * 128, Decision.KEEP, Reason.NO_POLICY)
        given_plan = Plan(NOW, (decision,), (), 0)
        assert given_plan == decode(encode(given_plan))

    @pytest.mark.parametrize(
        "data",
        [
            b"not compressed",
            zlib.compress(b"[1, 2]"),
            zlib.compress(orjson.dumps({"format": 99})),
            zlib.compress(orjson.dumps({"format": 2, "created_at": "x"})),
        ],
    )
    def test_unreadable_data_is_a_parse_error(self, data: bytes) -> None:
        """Anything but a stored plan raises ParseError, never something else."""
        with pytest.raises(ParseError):
            decode(data)
