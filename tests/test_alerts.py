from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.alerts import (
    FOUND_FIELDS,
    LISTED_FIELDS,
    Alert,
    AlertState,
    Digest,
    Evidence,
    Mode,
    Severity,
)
from monitor.errors import ParseError
from tests.alerting.factories import T0, make_alert

texts = st.text(max_size=30)
_BOUNDS = (datetime(2000, 1, 1), datetime(2100, 1, 1))  # noqa: DTZ001 - naive bounds
aware = st.datetimes(min_value=_BOUNDS[0], max_value=_BOUNDS[1], timezones=st.just(UTC))


@st.composite
def alerts(draw: st.DrawFn) -> Alert:
    first = draw(aware)
    return make_alert(
        rule=draw(texts),
        severity=draw(st.sampled_from(Severity)),
        fingerprint=draw(texts),
        subject=draw(st.dictionaries(texts, texts, max_size=4)),
        summary=draw(texts),
        evidence=Evidence(
            event_ids=tuple(draw(st.lists(texts, max_size=3))),
            rows=tuple(draw(st.lists(st.dictionaries(texts, texts, max_size=3), max_size=3))),
        ),
        first_seen_at=first,
        last_seen_at=first + draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(9))),
        count=draw(st.integers(min_value=1, max_value=10**6)),
        state=draw(st.sampled_from(AlertState)),
        mode=draw(st.sampled_from([Mode.ALERT, Mode.SHADOW])),
        repeat=draw(st.booleans()),
        id=draw(st.none() | st.integers(min_value=1, max_value=2**62)),
        resolved_at=draw(st.none() | aware),
    )


class TestAlert:
    @given(alerts())
    def test_dict_round_trip(self, alert: Alert) -> None:
        """`from_dict(to_dict())` gives the same alert back, for storage."""
        assert alert == Alert.from_dict(alert.to_dict())

    @pytest.mark.parametrize(
        "data",
        [
            {},
            {"rule": 1},
            {**make_alert().to_dict(), "severity": "loud"},
            {**make_alert().to_dict(), "first_seen_at": "yesterday"},
        ],
    )
    def test_malformed_dict_is_a_parse_error(self, data: dict[str, object]) -> None:
        """A stored alert that cannot be read raises ParseError, nothing else."""
        with pytest.raises(ParseError):
            Alert.from_dict(data)

    def test_the_outbox_form_before_one_model_is_read(self) -> None:
        """An outbox row written before the model was shared (evidence as `{event_ids, rows}`,
        no mode, repeat, id or resolved_at) reads as the same alert."""
        alert = make_alert()
        data = {
            "rule": alert.rule,
            "severity": "warning",
            "fingerprint": alert.fingerprint,
            "subject": dict(alert.subject),
            "summary": alert.summary,
            "evidence": {
                "event_ids": list(alert.evidence.event_ids),
                "rows": [dict(row) for row in alert.evidence.rows],
            },
            "first_seen_at": "2026-11-27T04:52:06Z",
            "last_seen_at": "2026-11-27T04:52:06Z",
            "count": 1,
            "state": "firing",
        }
        assert alert == Alert.from_dict(data)

    def test_listed_and_found_views(self) -> None:
        """The API/`alerts` view shows the stored row (evidence as event ids); the replay view
        shows what detection found, with `repeat`."""
        alert = make_alert(id=7, mode=Mode.SHADOW, repeat=True)
        listed, found = alert.to_dict(LISTED_FIELDS), alert.to_dict(FOUND_FIELDS)
        expected = (
            list(LISTED_FIELDS),
            (7, "shadow", ["1bbb6b22-99e8-4dda-a20c-4ef7b851e06d"], None),
            list(FOUND_FIELDS),
            (True, "2026-11-27T04:52:06Z"),
        )
        actual = (
            list(listed),
            (listed["id"], listed["mode"], listed["evidence"], listed["resolved_at"]),
            list(found),
            (found["repeat"], found["first_seen_at"]),
        )
        assert expected == actual

    def test_count_below_one_is_rejected(self) -> None:
        """An alert always stands for at least one occurrence."""
        with pytest.raises(ValueError, match="count"):
            make_alert(count=0)

    def test_last_seen_before_first_seen_is_rejected(self) -> None:
        """Time runs forward within an alert."""
        with pytest.raises(ValueError, match="before"):
            make_alert(first_seen_at=T0, last_seen_at=T0 - timedelta(seconds=1))

    def test_subject_is_read_only(self) -> None:
        """The subject mapping cannot be changed after the alert is made."""
        alert = make_alert()
        with pytest.raises(TypeError):
            alert.subject["user"] = "x"  # type: ignore[index]


class TestDigest:
    @given(st.lists(alerts(), max_size=3))
    def test_dict_round_trip(self, items: list[Alert]) -> None:
        """`Digest.from_dict(to_dict())` gives the same digest back, for storage."""
        digest = Digest("brute", T0, T0, tuple(items))
        assert digest == Digest.from_dict(digest.to_dict())

    def test_malformed_dict_is_a_parse_error(self) -> None:
        """A stored digest that cannot be read raises ParseError."""
        with pytest.raises(ParseError):
            Digest.from_dict({"rule": "r", "window_start": "now"})

    def test_fingerprint_names_rule_and_hour(self) -> None:
        """A digest has its own fingerprint, distinct per rule and hour."""
        digest = Digest("brute", T0.replace(minute=0, second=0), T0, ())
        expected = "digest:brute:2026-11-27T04:00:00Z"
        assert expected == digest.fingerprint
