"""The input boundary: what every event is made into before the store, or why it is refused."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.errors import ParseError
from monitor.events import Action, Event, Source
from monitor.ingest.boundary import (
    KEY_LIMITS,
    TEXT_LIMITS,
    Window,
    make_safe,
    safe_text,
    screen_events,
    screen_lines,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WINDOW = Window(NOW, timedelta(minutes=15))
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def event(**overrides: object) -> Event:
    base = Event(
        event_id="e-1",
        source=Source.NOTIFICATION,
        action=Action.PUSH,
        occurred_at=NOW - timedelta(hours=1),
        repository="team/app",
        tag="v1",
        digest="sha256:" + "a" * 64,
        actor="alice",
        user_agent="docker/27.1.1",
        size=476,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


class TestMakeSafe:
    def test_a_clean_event_is_returned_as_it_is(self) -> None:
        """Nothing to change: the very same object comes back (no copy on the intake path)."""
        clean = event()
        assert make_safe(clean, WINDOW) is clean

    @pytest.mark.parametrize(
        ("field", "value", "expected"),
        [
            ("actor", "bo\x00b", "bo\\x00b"),
            ("user_agent", "evil\r\n\x1b[31mred", "evil\\x0d\\x0a\\x1b[31mred"),
            ("request_uri", "/v2/\x7f", "/v2/\\x7f"),
            ("detail", "a\x85b", "a\\x85b"),
            ("actor", "x\ud800", "x\\ud800"),
            ("actor", "a" * 300, "a" * 254 + "…"),
            ("http_method", "G" * 20, "G" * 15 + "…"),
            ("actor", "zoë ünïcode", "zoë ünïcode"),
        ],
    )
    def test_free_text_is_escaped_and_cut(self, field: str, value: str, expected: str) -> None:
        """Control characters are written out; text longer than its column is cut with `…`."""
        assert expected == getattr(make_safe(event(**{field: value}), WINDOW), field)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("repository", "a\x00b"),
            ("repository", "r" * 256),
            ("tag", "t" * 129),
            ("digest", "sha256:" + "a" * 300),
            ("event_id", "id\n"),
            ("from_repository", "\x1b"),
        ],
    )
    def test_an_unsafe_identifier_refuses_the_event(self, field: str, value: str) -> None:
        """Identifiers are never rewritten: the event is refused, naming the field."""
        with pytest.raises(ParseError) as refused:
            make_safe(event(**{field: value}), WINDOW)
        assert ("unsafe_field", True) == (refused.value.reason, field in refused.value.message)

    @pytest.mark.parametrize(
        ("field", "value"),
        [("size", 2**63), ("size", -1), ("http_status", 1000), ("http_status", -5)],
    )
    def test_numbers_out_of_range_refuse_the_event(self, field: str, value: int) -> None:
        with pytest.raises(ParseError, match=field):
            make_safe(event(**{field: value}), WINDOW)

    @pytest.mark.parametrize(
        ("when", "accepted"),
        [
            (NOW + timedelta(minutes=15), True),
            (NOW + timedelta(minutes=15, seconds=1), False),
            (datetime(9999, 1, 1, tzinfo=UTC), False),
            (datetime(2000, 1, 1, tzinfo=UTC), True),
            (datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), False),
        ],
    )
    def test_times_outside_the_window_refuse_the_event(
        self, when: datetime, accepted: bool
    ) -> None:
        """From 2000-01-01 to now plus the skew tolerance, both ends included."""
        try:
            make_safe(event(occurred_at=when), WINDOW)
        except ParseError as exc:
            assert ("time_out_of_window", False) == (exc.reason, accepted)
        else:
            assert accepted

    @given(
        text=st.text(max_size=3000),
        field=st.sampled_from(sorted(TEXT_LIMITS)),
    )
    def test_any_free_text_comes_out_safe(self, text: str, field: str) -> None:
        """Whatever the text, the stored value has no control character and fits its column."""
        value = getattr(make_safe(event(**{field: text}), WINDOW), field)
        assert UNSAFE.search(value) is None
        assert len(value) <= TEXT_LIMITS[field]

    @given(text=st.text(max_size=400), field=st.sampled_from(sorted(KEY_LIMITS)))
    def test_any_identifier_is_kept_as_it_is_or_refused(self, text: str, field: str) -> None:
        """An identifier is never changed: it comes back equal, or ParseError."""
        try:
            safe = make_safe(event(**{field: text}), WINDOW)
        except ParseError:
            return
        assert text == getattr(safe, field)


class TestScreens:
    def test_long_lines_are_set_aside(self) -> None:
        assert (["a", "bb"], ["ccc"]) == screen_lines(["a", "ccc", "bb"], 2)

    def test_short_lines_are_returned_as_they_are(self) -> None:
        lines = ["a", "bb"]
        assert (lines, []) == screen_lines(lines, 2)

    def test_unsafe_events_are_set_aside_with_why(self) -> None:
        safe, unsafe = screen_events([event(), event(event_id="x", tag="t" * 200)], WINDOW)
        assert (["e-1"], ["x"], ["unsafe_field"]) == (
            [e.event_id for e in safe],
            [u.event.event_id for u in unsafe],
            [u.reason for u in unsafe],
        )

    def test_safe_text_leaves_printable_text_alone(self) -> None:
        assert "registry/app:1.0 ✓" == safe_text("registry/app:1.0 ✓", 255)
