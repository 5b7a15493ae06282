"""Log line times: RFC 3339 and combined-log, through the memo tables and without them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.events import format_timestamp, parse_timestamp
from monitor.ingest import memo
from monitor.ingest.timestamps import is_rfc3339, parse_clf_time, parse_rfc3339

EARLIEST, LATEST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


class TestTimes:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-11-27T04:52:04.547968093Z", datetime(2026, 11, 27, 4, 52, 4, 547968, UTC)),
            ("2026-11-27T04:52:04Z", datetime(2026, 11, 27, 4, 52, 4, tzinfo=UTC)),
            ("2026-11-27T05:52:04.5+01:00", datetime(2026, 11, 27, 4, 52, 4, 500000, UTC)),
            ("2026-11-27T04:52:04.Z", None),
            ("2026-13-27T04:52:04Z", None),
            ("2026-11-27T04:52:04.12x4Z", None),
            ("not a time", None),
        ],
    )
    def test_rfc3339(self, text: str, expected: datetime | None) -> None:
        """RFC 3339 with up to nanoseconds and any offset becomes UTC; anything else None."""
        assert expected == parse_rfc3339(text)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("27/Nov/2026:04:52:05 +0000", datetime(2026, 11, 27, 4, 52, 5, tzinfo=UTC)),
            ("27/Nov/2026:01:52:05 -0300", datetime(2026, 11, 27, 4, 52, 5, tzinfo=UTC)),
            ("27/Foo/2026:04:52:05 +0000", None),
            ("31/Feb/2026:04:52:05 +0000", None),
        ],
    )
    def test_combined_log_time(self, text: str, expected: datetime | None) -> None:
        """The access log's time with its offset becomes UTC; an impossible date gives None."""
        assert expected == parse_clf_time(text)

    def test_offset_times_are_utc(self) -> None:
        """A parsed time always has the UTC zone object, whatever the offset written."""
        parsed = parse_rfc3339("2026-11-27T04:52:04-02:30")
        assert parsed is not None
        assert (UTC, datetime(2026, 11, 27, 7, 22, 4, tzinfo=timezone(timedelta(0)))) == (
            parsed.tzinfo,
            parsed,
        )


_SECOND_TIMES = st.datetimes(
    min_value=datetime(1970, 1, 1, tzinfo=UTC).replace(tzinfo=None),
    max_value=datetime(9998, 12, 31, tzinfo=UTC).replace(tzinfo=None),
)


class TestTimesOfKnownMinutes:
    @given(_SECOND_TIMES, st.integers(min_value=0, max_value=59))
    def test_rfc3339_new_second_of_known_minute(self, when: datetime, second: int) -> None:
        """A second first seen after another second of its minute parses like any other."""
        parse_rfc3339(f"{when:%Y-%m-%dT%H:%M:%S}Z")
        later = when.replace(second=second, microsecond=0, tzinfo=UTC)
        assert later == parse_rfc3339(f"{later:%Y-%m-%dT%H:%M:%S}.000Z")

    @given(_SECOND_TIMES)
    def test_rfc3339_second_60_of_known_minute(self, when: datetime) -> None:
        """Second 60 is refused even when its minute was seen."""
        parse_rfc3339(f"{when:%Y-%m-%dT%H:%M:%S}Z")
        assert None is parse_rfc3339(f"{when:%Y-%m-%dT%H:%M}:60Z")

    @given(
        _SECOND_TIMES,
        st.integers(min_value=0, max_value=59),
        st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
    )
    def test_clf_new_second_of_known_minute(self, when: datetime, second: int, offset: int) -> None:
        """A combined-log second first seen after another of its minute and offset is exact."""
        zone = f"{'+' if offset >= 0 else '-'}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
        parse_clf_time(f"{when:%d/%b/%Y:%H:%M:%S} {zone}")
        later = when.replace(second=second, microsecond=0)
        expected = later.replace(tzinfo=timezone(timedelta(minutes=offset))).astimezone(UTC)
        assert expected == parse_clf_time(f"{later:%d/%b/%Y:%H:%M:%S} {zone}")

    @given(_SECOND_TIMES)
    def test_clf_second_60_of_known_minute(self, when: datetime) -> None:
        """Second 60 in a combined-log time is refused even when its minute was seen."""
        parse_clf_time(f"{when:%d/%b/%Y:%H:%M:%S} +0000")
        assert None is parse_clf_time(f"{when:%d/%b/%Y:%H:%M}:60 +0000")


class TestOneParser:
    @given(
        _SECOND_TIMES,
        st.sampled_from(["", ".5", ".547968", ".547968093"]),
        st.sampled_from(["Z", "z", "+00:00", "-02:30", "+05:45"]),
    )
    def test_fast_path_and_full_parse_agree(self, when: datetime, fraction: str, zone: str) -> None:
        """The memoised log parser gives what `parse_timestamp` gives, for every form."""
        text = f"{when:%Y-%m-%dT%H:%M:%S}{fraction}{zone}"
        assert (parse_timestamp(text), True) == (parse_rfc3339(text), is_rfc3339(text))

    @pytest.mark.parametrize(
        "text",
        [
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:30:00-01:00",
            "2026-11-27T04:52:04Z\n",
            "2026-11-27T04:52:04+24:00",
            "\uff12\uff10\uff12\uff16-11-27T04:52:04Z",  # full-width digits
        ],
    )
    def test_out_of_range_and_not_quite_rfc3339_is_refused(self, text: str) -> None:
        """A time out of range, a trailing line break, a 24-hour offset, non-ASCII digits: refused."""
        with pytest.raises(ValueError):
            parse_timestamp(text)
        assert None is parse_rfc3339(text)

    @given(st.datetimes(timezones=st.just(UTC)))
    def test_format_then_parse_is_the_same_time(self, when: datetime) -> None:
        """`format_timestamp` writes what `parse_timestamp` reads back."""
        assert when == parse_timestamp(format_timestamp(when))

    @given(
        st.datetimes(),
        st.sampled_from([None, UTC, timezone(timedelta(0)), timezone(timedelta(hours=-2, minutes=-30)),
                         timezone(timedelta(hours=5, minutes=45))]),
    )  # fmt: skip
    def test_format_writes_what_isoformat_writes_in_utc(
        self, when: datetime, zone: timezone | None
    ) -> None:
        """Any time, naive (taken as UTC) or in any zone, is written in UTC with a `Z`, its
        microseconds only when it has some: the spelling of `isoformat`."""
        when = when.replace(tzinfo=zone)
        if zone is not None and not EARLIEST <= when <= LATEST:
            return  # no UTC time to write
        expected = when.replace(tzinfo=UTC) if zone is None else when.astimezone(UTC)
        assert expected.isoformat().replace("+00:00", "Z") == format_timestamp(when)


class TestMemoBounds:
    def test_a_full_table_empties_before_it_grows(self) -> None:
        """`remember` never lets a table hold more than its bound."""
        table: memo.Memo[int, int] = memo.Memo(3)
        sizes = [len(table) for n in range(7) if table.remember(n, n * n) == n * n]
        assert ([1, 2, 3, 1, 2, 3, 1], {6: 36}) == (sizes, dict(table))

    def test_more_seconds_than_the_bound_stay_bounded_and_exact(self) -> None:
        """Parsing more distinct seconds than the tables hold keeps them bounded, answers exact."""
        start = datetime(2026, 11, 27, tzinfo=UTC)
        bound = memo.RFC3339_SECONDS.bound
        times = [start + timedelta(seconds=n) for n in range(bound + 500)]
        parsed = [parse_rfc3339(f"{t:%Y-%m-%dT%H:%M:%S}Z") for t in times]
        clf = [parse_clf_time(f"{t:%d/%b/%Y:%H:%M:%S} +0000") for t in times]
        assert (times, times) == (parsed, clf)
        tables = (memo.RFC3339_SECONDS, memo.RFC3339_MINUTES, memo.CLF_TIMES, memo.CLF_MINUTES)
        assert all(len(t) <= t.bound for t in tables)
