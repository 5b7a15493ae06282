"""Job leases on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from monitor.runtime import Services
from monitor.store.locks import acquire_lock, lock_holder, release_lock, renew_lock

T0 = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
TTL = timedelta(minutes=10)


def acquire(services: Services, holder: str, at: datetime) -> bool:
    with services.session_factory() as session, session.begin():
        return acquire_lock(session, name="job", holder=holder, now=at, ttl=TTL)


class TestJobLocks:
    def test_first_caller_gets_the_lease(self, services: Services) -> None:
        """The first caller wins; later acquires, even by the holder, are refused while it runs."""
        expected = (True, False, False)
        actual = (
            acquire(services, "a", T0),
            acquire(services, "b", T0 + timedelta(minutes=5)),
            acquire(services, "a", T0 + timedelta(minutes=5)),
        )
        assert expected == actual

    def test_a_lapsed_lease_can_be_taken(self, services: Services) -> None:
        """Once the lease expires another replica takes it."""
        acquire(services, "a", T0)
        assert acquire(services, "b", T0 + TTL)
        with services.session_factory() as session:
            assert "b" == lock_holder(session, name="job", now=T0 + TTL)

    def test_renew_extends_only_for_the_holder(self, services: Services) -> None:
        """Renewing pushes the expiry for the holder; another replica's renew does nothing."""
        acquire(services, "a", T0)
        with services.session_factory() as session, session.begin():
            renewed = (
                renew_lock(session, name="job", holder="a", now=T0 + timedelta(minutes=9), ttl=TTL),
                renew_lock(session, name="job", holder="b", now=T0 + timedelta(minutes=9), ttl=TTL),
            )
        assert (True, False) == renewed
        assert not acquire(services, "b", T0 + timedelta(minutes=15))

    def test_release_lets_others_in_at_the_given_time(self, services: Services) -> None:
        """A release with `until` keeps the lease until then and no longer."""
        acquire(services, "a", T0)
        with services.session_factory() as session, session.begin():
            release_lock(session, name="job", holder="a", until=T0 + timedelta(minutes=2))
        expected = (False, True)
        actual = (
            acquire(services, "b", T0 + timedelta(minutes=1)),
            acquire(services, "b", T0 + timedelta(minutes=2)),
        )
        assert expected == actual

    def test_racing_replicas_get_one_lease(self, services: Services) -> None:
        """Eight threads acquiring at the same time: exactly one wins."""
        results: list[bool] = []
        barrier = threading.Barrier(8)
        lock = threading.Lock()

        def race(name: str) -> None:
            barrier.wait(timeout=10)
            won = acquire(services, name, T0)
            with lock:
                results.append(won)

        threads = [threading.Thread(target=race, args=(f"r{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert [True] == [r for r in results if r]
        assert 8 == len(results)
