"""The batched alert writes of a detection pass equal the one-at-a-time ones they replace:
same stored alerts, same created/refired answers, same alerts resolved, same evidence rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete, select
from sqlalchemy.orm import Session

from monitor.alerts import Alert, AlertState, Evidence, Mode, Severity
from monitor.events import Action, Event, Source
from monitor.store.alerts import (
    EVIDENCE_ROWS,
    evidence_rows_many,
    resolve_alert,
    resolve_quiet,
    upsert_alert,
    upsert_alerts,
)
from monitor.store.events import insert_events
from monitor.store.migrate import upgrade
from monitor.store.schema import AlertRow, EventRow

T0 = datetime(2026, 11, 27, tzinfo=UTC)
FINGERPRINTS = [f"rule-{i % 3}:{i}" for i in range(6)]
QUIET = {"rule-0": timedelta(minutes=10), "rule-1": timedelta(hours=1)}  # rule-2: unconfigured


def _alert(fingerprint: str, minute: int, span: int, mode: Mode, repeat: bool) -> Alert:
    return Alert(
        rule=fingerprint.split(":")[0],
        severity=Severity.WARNING,
        fingerprint=fingerprint,
        subject={"actor": fingerprint},
        summary=f"summary {minute}",
        evidence=Evidence(event_ids=(f"e{minute % 7}", f"e{(minute + 3) % 7}")),
        first_seen_at=T0 + timedelta(minutes=minute),
        last_seen_at=T0 + timedelta(minutes=minute + span),
        mode=mode,
        repeat=repeat,
    )


alerts = st.builds(
    _alert,
    st.sampled_from(FINGERPRINTS),
    st.integers(0, 120),
    st.integers(0, 30),
    st.sampled_from([Mode.ALERT, Mode.SHADOW]),
    st.booleans(),
)
existing = st.lists(
    st.tuples(alerts, st.sampled_from([AlertState.FIRING, AlertState.RESOLVED])),
    unique_by=lambda t: t[0].fingerprint,
    max_size=6,
)
found = st.lists(st.tuples(alerts, st.integers(0, 3)), max_size=8)
ongoing = st.sets(st.sampled_from(FINGERPRINTS), max_size=3)
at = st.integers(0, 300).map(lambda m: T0 + timedelta(minutes=m))


def _unnumbered(alert: Alert) -> Alert:
    """PostgreSQL sequences do not roll back: ids differ between the two runs."""
    return Alert(**{**{f: getattr(alert, f) for f in Alert.__dataclass_fields__}, "id": None})


def _table(session: Session) -> list[tuple[Any, ...]]:
    rows = session.scalars(select(AlertRow).order_by(AlertRow.fingerprint))
    return [
        (r.fingerprint, r.rule, r.mode, r.summary, r.evidence, r.first_seen_at, r.last_seen_at,
         r.count, r.state, r.resolved_at)
        for r in rows
    ]  # fmt: skip


def _seed(session: Session, rows: list[tuple[Alert, AlertState]]) -> None:
    for alert, state in rows:
        upsert_alert(session, alert, hits=1)
        if state is AlertState.RESOLVED:
            resolve_alert(session, alert.fingerprint, at=alert.last_seen_at)


def reference_resolve(session: Session, ongoing: set[str], at: datetime) -> list[Alert]:
    """The one-by-one resolution detection did before: every firing alert, checked in turn."""
    resolved = []
    for fingerprint, rule, last_seen_at in session.execute(
        select(AlertRow.fingerprint, AlertRow.rule, AlertRow.last_seen_at).where(
            AlertRow.state == AlertState.FIRING.value
        )
    ):
        if fingerprint in ongoing or last_seen_at + QUIET.get(rule, timedelta(0)) > at:
            continue
        done = resolve_alert(session, fingerprint, at=at)
        if done is not None:
            resolved.append(done)
    return resolved


def reference_evidence(session: Session, event_ids: tuple[str, ...]) -> list[dict[str, str]]:
    """The query detection ran per alert before."""
    out = []
    for row in session.scalars(
        select(EventRow)
        .where(EventRow.event_id.in_(list(event_ids)))
        .order_by(EventRow.occurred_at.asc(), EventRow.id.asc())
        .limit(EVIDENCE_ROWS)
    ):
        values = {"time": row.occurred_at.isoformat().replace("+00:00", "Z")}
        for name in ("action", "repository", "tag", "actor", "remote_ip", "user_agent"):
            if getattr(row, name) is not None:
                values[name] = str(getattr(row, name))
        out.append(values)
    return out


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    built = create_engine(db_url)
    upgrade(built)
    with Session(built) as session, session.begin():
        events = [
            Event(f"e{i}", Source.LOG, Action.PULL, T0 + timedelta(minutes=i % 4), actor=f"a{i}")
            for i in range(6)
        ]
        insert_events(session, events, received_at=T0)
    yield built
    built.dispose()


class TestAlertBatches:
    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(seed=existing, batch=found, open_incidents=ongoing, when=at)
    def test_batched_writes_equal_one_at_a_time(self, engine, seed, batch, open_incidents, when):
        """Upserting a pass's alerts together and resolving the quiet ones by rule store and
        return what upserting and resolving them one by one did."""
        outcomes = []
        for batched in (False, True):
            with Session(engine) as session:
                session.begin()
                session.execute(delete(AlertRow))
                _seed(session, seed)
                if batched:
                    upserted = upsert_alerts(session, batch)
                    resolved = resolve_quiet(session, quiet=QUIET, ongoing=open_incidents, at=when)
                else:
                    upserted = [upsert_alert(session, a, hits=h) for a, h in batch]
                    resolved = reference_resolve(session, open_incidents, when)
                outcomes.append(
                    (
                        [(_unnumbered(u.alert), u.created, u.refired) for u in upserted],
                        sorted((_unnumbered(a) for a in resolved), key=lambda a: a.fingerprint),
                        _table(session),
                    )
                )
                session.rollback()
        assert outcomes[0] == outcomes[1]

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        evidence=st.lists(
            st.lists(st.sampled_from([f"e{i}" for i in range(9)]), max_size=6).map(tuple),
            max_size=5,
        )
    )
    def test_evidence_of_many_alerts_equals_one_query_each(self, engine, evidence):
        """Sample rows read for all queued alerts at once equal the per-alert query's."""
        with Session(engine) as session:
            expected = [reference_evidence(session, ids) for ids in evidence]
            assert expected == evidence_rows_many(session, evidence)
