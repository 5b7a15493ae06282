"""The tag gauges counted in one pass equal the separate counts (live tags, tags unused for
N days) on any tag state, on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete
from sqlalchemy.orm import Session

from monitor.store.migrate import upgrade
from monitor.store.schema import TagStateRow
from monitor.store.stats import live_tags, tag_counts, unused_tags

NOW = datetime(2026, 11, 30, tzinfo=UTC)
DAYS = (30, 90)
moment = st.integers(0, 200 * 86_400).map(lambda s: NOW - timedelta(seconds=s))
tags = st.lists(
    st.tuples(moment, st.none() | moment, st.none() | moment),
    max_size=30,
)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    built = create_engine(db_url)
    upgrade(built)
    yield built
    built.dispose()


class TestTagCounts:
    @settings(
        max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(rows=tags)
    def test_one_pass_equals_the_separate_counts(self, engine: Engine, rows) -> None:
        """Whatever the first-seen, last-pulled and deleted times, the counts agree."""
        with Session(engine) as session, session.begin():
            session.execute(delete(TagStateRow))
            session.add_all(
                TagStateRow(
                    repository="team/app", tag=f"t{i}", digest=None, media_type=None,
                    first_seen_at=first, last_pushed_at=None, last_pushed_by=None,
                    last_pulled_at=pulled, pull_count=0, deleted_at=deleted,
                )
                for i, (first, pulled, deleted) in enumerate(rows)
            )  # fmt: skip
        with Session(engine) as session:
            expected = (
                live_tags(session),
                {days: unused_tags(session, now=NOW, days=days) for days in DAYS},
            )
            assert expected == tag_counts(session, now=NOW, unused_days=DAYS)
