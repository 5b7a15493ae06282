from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.alerting.model import Alert, AlertState, Digest, Evidence, Severity
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
