"""A unit of work in its own transaction: run again, from the start, when PostgreSQL broke it
off for a conflicting writer (deadlock, serialization failure); raised at once for anything
else, and raised after a bounded number of runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from monitor.cli.session import problem
from monitor.runtime import Services
from monitor.store.failures import is_conflict
from monitor.store.schema import JobLockRow
from monitor.store.transaction import ATTEMPTS, in_transaction

CONFLICTS = ["deadlock_detected", "serialization_failure"]
LATER = datetime(2026, 12, 1, tzinfo=UTC)


def same(holder: str) -> JobLockRow:
    return JobLockRow(name="same", holder=holder, expires_at=LATER)


def locks(services: Services) -> int:
    with services.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(JobLockRow)) or 0)


class Unit:
    """Writes a job lock row, then fails with `errors[run]` (a PostgreSQL condition name)."""

    def __init__(self, *errors: str | None) -> None:
        self.errors = errors
        self.runs = 0

    def __call__(self, session: Session) -> int:
        run, self.runs = self.runs, self.runs + 1
        session.add(JobLockRow(name=f"job-{run}", holder="test", expires_at=LATER))
        session.flush()
        error = self.errors[run] if run < len(self.errors) else None
        if error is not None:
            session.execute(text(f"DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '{error}'; END $$"))
        return run


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
class TestConflicts:
    @pytest.mark.parametrize("condition", CONFLICTS)
    def test_a_broken_off_unit_runs_again(self, services: Services, condition: str) -> None:
        """The first run is rolled back whole; the second commits and its result is returned."""
        pauses: list[float] = []
        unit = Unit(condition)
        assert 1 == in_transaction(services.session_factory, unit, pause=pauses.append)
        assert (2, 1, 1) == (unit.runs, len(pauses), locks(services))

    def test_conflicts_every_time_are_raised_after_the_last_run(self, services: Services) -> None:
        """A unit broken off on every run is run ATTEMPTS times, with longer pauses between
        runs, and its conflict is raised; nothing it wrote is kept."""
        pauses: list[float] = []
        unit = Unit(*["deadlock_detected"] * ATTEMPTS)
        with pytest.raises(DBAPIError) as raised:
            in_transaction(services.session_factory, unit, pause=pauses.append, jitter=lambda: 0.5)
        assert (True, ATTEMPTS, 0) == (is_conflict(raised.value), unit.runs, locks(services))
        assert pauses == sorted(pauses) and len(pauses) == ATTEMPTS - 1

    def test_the_command_line_says_to_run_again(self, services: Services) -> None:
        """A command whose transaction kept being broken off says so, not that the database
        is down."""
        unit = Unit(*["deadlock_detected"] * 2)
        with pytest.raises(DBAPIError) as raised:
            in_transaction(services.session_factory, unit, attempts=2, pause=lambda _: None)
        message = str(problem(raised.value, services.settings.database))
        assert message.endswith("for another writer's (deadlock_detected): run the command again")
        assert "check that PostgreSQL is running" not in message


class TestOtherFailures:
    def test_a_refused_unit_runs_once(self, services: Services) -> None:
        """A unit the database refuses (here a duplicate key) is not run again."""
        runs: list[int] = []

        def duplicate(session: Session) -> None:
            runs.append(1)
            session.add_all([same("a"), same("b")])
            session.flush()

        with pytest.raises(IntegrityError):
            in_transaction(services.session_factory, duplicate, pause=lambda _: None)
        assert ([1], 0) == (runs, locks(services))

    def test_a_unit_that_succeeds_commits(self, services: Services) -> None:
        assert 0 == in_transaction(services.session_factory, Unit())
        assert 1 == locks(services)
