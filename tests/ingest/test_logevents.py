from __future__ import annotations

from monitor.events import Action
from monitor.ingest.logevents import line_event_id, request_event_id


class TestEventIds:
    def test_request_ids_are_stable_per_action(self) -> None:
        """The same request and action always give the same id; another action another id."""
        first = request_event_id("r1", Action.AUTH_FAILURE)
        assert first == request_event_id("r1", Action.AUTH_FAILURE)
        assert first != request_event_id("r1", Action.REQUEST)
        assert first.startswith("log:")

    def test_identical_lines_are_told_apart_by_their_rank(self) -> None:
        """Two copies of one line get two ids, and each copy the same id on every run."""
        ids = [line_event_id("x", n) for n in range(3)]
        assert len(set(ids)) == 3
        assert ids == [line_event_id("x", n) for n in range(3)]
