from __future__ import annotations

import concurrent.futures
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.alerting.recording import RecordingNotifier
from monitor.pipeline import detection
from monitor.pipeline.delivery import deliver_once
from monitor.pipeline.detection import (
    BATCH_MAX,
    Progress,
    catch_up,
    detect_once,
    detect_pass,
)
from monitor.runtime import Services
from monitor.store.detector_state import detector_position, events_after
from tests.conftest import PostgresDatabases
from tests.detect.test_engine import SCENARIO_ALERTS
from tests.pipeline.support import (
    START,
    Clock,
    alert_rows,
    failures,
    outbox_rows,
    post_scenario,
    start_services,
    stop_services,
    store,
)

SETTLE = timedelta(seconds=2)

# The findings tests/detect/test_engine.py lists for the shared capture with these roles.


def run(services: Services, clock: Clock, *, batch_max: int = 1000) -> int:
    """Detection passes until nothing is left; returns the events processed."""
    total = 0
    for _ in range(200):
        report = detect_pass(
            services.session_factory,
            services.detector,
            now=clock(),
            settle=SETTLE,
            batch_max=batch_max,
        )
        total += report.processed
        if report.processed == 0:
            return total
    raise AssertionError("detection did not catch up in 200 passes")


class TestDetectPass:
    def test_scenario_raises_the_alerts_the_detection_tests_list(self, live, clock):
        """The capture posted through intake plus its failed logins raises exactly the detect
        tests' alerts; the shadow one is stored and not queued."""
        post_scenario(live)
        clock.advance(5)
        assert 54 == run(live, clock)
        actual = (alert_rows(live), outbox_rows(live))
        expected = (
            SCENARIO_ALERTS,
            [("new", "out_of_role", "pending"), ("new", "delete_outside_cleanup", "pending")],
        )
        assert expected == actual

    @pytest.mark.parametrize("batch_max", [1, 7, 20])
    def test_small_batches_raise_the_same_alerts(self, live, clock, batch_max):
        """Processing the scenario a few events at a time stores the same alerts and counts."""
        post_scenario(live)
        clock.advance(5)
        run(live, clock, batch_max=batch_max)
        assert SCENARIO_ALERTS == alert_rows(live)

    def test_a_pass_reads_and_judges_its_events_a_slice_at_a_time(self, live, clock, monkeypatch):
        """A pass larger than SLICE_EVENTS reads its events in slices, one after another, and
        stores the alerts and the cursor one pass over them all stores."""
        monkeypatch.setattr(detection, "SLICE_EVENTS", 5)
        reads: list[tuple[int, int]] = []

        def counted(session, cursor, *, received_before, limit):
            out = events_after(session, cursor, received_before=received_before, limit=limit)
            reads.append((limit, len(out)))
            return out

        monkeypatch.setattr(detection, "events_after", counted)
        post_scenario(live)
        clock.advance(5)
        report = detect_pass(live.session_factory, live.detector, now=clock(), settle=SETTLE)
        assert (54, [(5, 5)] * 10 + [(5, 4)], SCENARIO_ALERTS, report.cursor) == (
            report.processed,
            reads,
            alert_rows(live),
            saved_cursor(live),
        )

    def test_a_pass_failing_between_slices_forgets_what_it_judged(self, live, clock, monkeypatch):
        """A pass judges onto the state its job holds; when a later slice cannot be read, the
        pass fails and the job forgets that state, so the next pass starts from the saved one
        and the alerts stored are those of passes that never failed."""
        monkeypatch.setattr(detection, "SLICE_EVENTS", 5)
        reads: list[int] = []

        def failing_third(session, cursor, *, received_before, limit):
            reads.append(cursor)
            if len(reads) == 3:
                raise OSError("the store went away")
            return events_after(session, cursor, received_before=received_before, limit=limit)

        monkeypatch.setattr(detection, "events_after", failing_third)
        post_scenario(live)
        clock.advance(5)
        progress = Progress()
        first = kept_pass(live, clock, progress, batch_max=5)
        held = progress.state is not None
        with pytest.raises(OSError):
            kept_pass(live, clock, progress)
        forgotten = progress.state is None
        monkeypatch.setattr(detection, "events_after", events_after)
        rest = kept_pass(live, clock, progress)
        assert (5, True, True, 49, SCENARIO_ALERTS) == (
            first,
            held,
            forgotten,
            rest,
            alert_rows(live),
        )

    def test_a_backlog_is_judged_in_one_catch_up_of_growing_passes(self, live, clock, tmp_path):
        """2.5 batches of failed logins: catch_up runs a full pass, then one twice as large
        that comes back short, and stores the alerts that passes of 100 events store."""
        backlog = BATCH_MAX * 5 // 2
        reference = start_services(f"sqlite:///{tmp_path / 'reference.db'}", tmp_path / "r", clock)
        for services in (live, reference):
            store(services, failures(backlog, start=START))
        clock.advance(3)
        report = catch_up(live.session_factory, live.detector, clock=clock, settle=SETTLE)
        run(reference, clock, batch_max=100)
        expected = alert_rows(reference)
        stop_services(reference)
        assert ((2, backlog, False), 0, expected) == (
            (report.passes, report.processed, report.behind),
            run(live, clock),
            alert_rows(live),
        )

    def test_passes_of_a_catch_up_stop_growing_at_the_cap(self, live, clock):
        """With the cap at the first batch, 2.5 batches take three passes of at most BATCH_MAX
        (the last one short), where the default cap takes two."""
        backlog = BATCH_MAX * 5 // 2
        store(live, failures(backlog, start=START))
        clock.advance(3)
        passes: list[int] = []
        report = catch_up(
            live.session_factory,
            live.detector,
            clock=clock,
            settle=SETTLE,
            batch_cap=BATCH_MAX,
            on_pass=lambda one, _now: passes.append(one.processed),
        )
        assert ([BATCH_MAX, BATCH_MAX, backlog - 2 * BATCH_MAX], False) == (passes, report.behind)

    def test_events_wait_until_they_settle(self, live, clock):
        """Events received less than settle_seconds ago are left for a later pass."""
        store(live, failures(5, start=START))
        before = run(live, clock)
        clock.advance(3)
        after = run(live, clock)
        assert (0, 5) == (before, after)

    def test_a_repeat_counts_onto_the_alert_and_queues_a_repeat(self, live, clock):
        """A sixth failed login inside the cooldown raises the count and queues a repeat."""
        store(live, failures(5, start=START - timedelta(seconds=30)))
        clock.advance(3)
        run(live, clock)
        store(live, failures(1, start=START - timedelta(seconds=10), actor="mallory"))
        clock.advance(3)
        run(live, clock)
        rules = {row[0]: row[4] for row in alert_rows(live)}
        kinds = [(kind, rule) for kind, rule, _ in outbox_rows(live)]
        expected = (
            {"brute_force_account": 2, "brute_force_address": 2},
            [
                ("new", "brute_force_account"),
                ("new", "brute_force_address"),
                ("repeat", "brute_force_account"),
                ("repeat", "brute_force_address"),
            ],
        )
        assert expected == (rules, kinds)

    def test_a_quiet_alert_resolves_and_queues_a_resolve(self, live, clock):
        """Once the rule's window and cooldown pass without a hit, the alert resolves."""
        store(live, failures(5, start=START - timedelta(seconds=30)))
        clock.advance(3)
        run(live, clock)
        clock.advance(11 * 60)
        run(live, clock)
        kinds = [(kind, rule) for kind, rule, _ in outbox_rows(live)]
        expected = [
            ("new", "brute_force_account"),
            ("new", "brute_force_address"),
            ("resolve", "brute_force_account"),
            ("resolve", "brute_force_address"),
        ]
        assert expected == kinds


class TestShortWrites:
    def test_the_outcome_written_by_the_intake_writer_is_the_same(self, live, clock):
        """Passes whose outcome goes through the intake writer (as in serve) raise the same
        alerts and queue the same messages as passes with a transaction of their own."""
        post_scenario(live)
        clock.advance(5)
        total = 0
        for _ in range(200):
            report = detect_pass(
                live.session_factory, live.detector, now=clock(), settle=SETTLE,
                batch_max=10, transact=live.writer.transact,
            )  # fmt: skip
            total += report.processed
            if report.processed == 0:
                break
        expected = (
            SCENARIO_ALERTS,
            [("new", "out_of_role", "pending"), ("new", "delete_outside_cleanup", "pending")],
        )
        assert (54, expected) == (total, (alert_rows(live), outbox_rows(live)))

    def test_a_pass_overtaken_by_another_writes_nothing(self, live, clock):
        """When another pass (another replica) saved the detector between this pass's read and
        its write, this pass writes nothing: every alert is raised once."""
        post_scenario(live)
        clock.advance(5)
        overtaken: list[int] = []

        def after_another_pass(write):
            overtaken.append(run(live, clock))
            with live.session_factory() as session, session.begin():
                return write(session)

        report = detect_pass(
            live.session_factory, live.detector, now=clock(), settle=SETTLE,
            transact=after_another_pass,
        )  # fmt: skip
        assert ([54], 0) == (overtaken, report.processed)
        assert SCENARIO_ALERTS == alert_rows(live)
        assert 2 == len(outbox_rows(live))


SAVE_EVERY = timedelta(seconds=30)


def kept_pass(services: Services, clock: Clock, progress: Progress, **options: object) -> int:
    """One pass of a job that keeps its progress between saves; the events it processed."""
    report = detect_pass(
        services.session_factory, services.detector, now=clock(), settle=SETTLE,
        progress=progress, save_every=SAVE_EVERY, **options,  # type: ignore[arg-type]
    )  # fmt: skip
    return report.processed


def saved_cursor(services: Services) -> int | None:
    with services.session_factory() as session:
        position = detector_position(session, "default")
    return None if position is None else position[0]


class TestProgressBetweenSaves:
    def test_passes_that_keep_their_progress_raise_the_same_alerts(self, live, clock, tmp_path):
        """Passes of 7 events that keep their progress store the alerts and queue the messages
        (repeats included) of passes of 7 that save every time."""
        reference = start_services(f"sqlite:///{tmp_path / 'reference.db'}", tmp_path / "r", clock)
        for services in (live, reference):
            post_scenario(services)
        clock.advance(5)
        progress = Progress()
        processed = [kept_pass(live, clock, progress, batch_max=7) for _ in range(12)]
        run(reference, clock, batch_max=7)
        expected = (alert_rows(reference), outbox_rows(reference))
        stop_services(reference)
        assert (54, SCENARIO_ALERTS, expected) == (
            sum(processed),
            expected[0],
            (alert_rows(live), outbox_rows(live)),
        )

    def test_held_events_count_towards_the_alert_that_saves(self, live, clock):
        """Three failed logins (under the threshold of 5) are judged and held: the saved
        cursor stays; two more fire the brute-force alerts from the state held, and that pass
        saves the cursor it reached."""
        progress = Progress()
        store(live, failures(3, start=START - timedelta(seconds=60)))
        clock.advance(3)
        first = (kept_pass(live, clock, progress), saved_cursor(live), alert_rows(live))
        held = progress.cursor
        store(live, failures(2, start=START - timedelta(seconds=10)))
        clock.advance(3)
        second = (kept_pass(live, clock, progress), saved_cursor(live))
        fired = [row[0] for row in alert_rows(live)]
        assert ((3, 0, []), (2, held + 2), ["brute_force_account", "brute_force_address"]) == (
            first,
            second,
            fired,
        )

    def test_a_quiet_pass_saves_what_it_holds_once_the_save_is_due(self, live, clock):
        """Within `save_every` of the last save, a pass that changes no alert leaves the saved
        row; the first pass after it saves the state and cursor held."""
        progress = Progress()
        store(live, failures(3, start=START - timedelta(seconds=60)))
        clock.advance(3)
        judged = kept_pass(live, clock, progress)
        clock.advance(SAVE_EVERY.total_seconds() - 1)
        early = (kept_pass(live, clock, progress), saved_cursor(live))
        clock.advance(1)
        due = (kept_pass(live, clock, progress), saved_cursor(live))
        assert (3, (0, 0), (0, progress.cursor)) == (judged, early, due)

    def test_a_restart_before_the_save_judges_the_held_events_again(self, live, clock):
        """Progress lost before its save (a restart) costs a second judgement of the same
        events, from the state saved: the alerts are the same."""
        store(live, failures(3, start=START - timedelta(seconds=60)))
        clock.advance(3)
        kept_pass(live, clock, Progress())
        store(live, failures(2, start=START - timedelta(seconds=10)))
        clock.advance(3)
        again = kept_pass(live, clock, Progress())
        assert (5, ["brute_force_account", "brute_force_address"]) == (
            again,
            [row[0] for row in alert_rows(live)],
        )

    def test_a_pass_of_another_replica_supersedes_the_progress_held(self, live, clock):
        """When another replica saved the detector, the progress held is dropped: this pass
        writes nothing and the next one starts from what the other saved; each alert is
        raised once."""
        progress = Progress()
        store(live, failures(3, start=START - timedelta(seconds=60)))
        clock.advance(3)
        kept_pass(live, clock, progress)
        store(live, failures(2, start=START - timedelta(seconds=10)))
        clock.advance(3)
        overtaken: list[int] = []

        def after_another_pass(write):  # the other replica saves every pass
            overtaken.append(run(live, clock))
            with live.session_factory() as session, session.begin():
                return write(session)

        superseded = kept_pass(live, clock, progress, transact=after_another_pass)
        clock.advance(1)
        assert ([5], 0, 0, None, 2) == (
            overtaken,
            superseded,
            kept_pass(live, clock, progress),
            progress.state and None,
            len(alert_rows(live)),
        )


class TestRestart:
    def test_a_restart_inside_a_brute_force_window_still_fires(self, db_url, tmp_path, clock):
        """Three failures, a restart from the same store, two more: the threshold of 5 fires."""
        first = start_services(db_url, tmp_path, clock)
        store(first, failures(3, start=START - timedelta(seconds=60)))
        clock.advance(3)
        run(first, clock)
        before = alert_rows(first)
        stop_services(first)
        second = start_services(db_url, tmp_path, clock)
        try:
            store(second, failures(2, start=START - timedelta(seconds=10)))
            clock.advance(3)
            run(second, clock)
            after = [row[0] for row in alert_rows(second)]
        finally:
            stop_services(second)
        assert ([], ["brute_force_account", "brute_force_address"]) == (before, after)


class TestReplicas:
    def test_two_replicas_on_one_postgres_raise_and_deliver_each_alert_once(
        self, postgres: PostgresDatabases, tmp_path: Path
    ):
        """Two services on one PostgreSQL database, running both jobs at once over the same
        events, store each alert once and deliver each once."""
        url = postgres.create()
        clock = Clock()
        notifier = RecordingNotifier()
        replicas = [start_services(url, tmp_path / name, clock, notifier=notifier) for name in "ab"]
        try:
            post_scenario(replicas[0])
            store(replicas[1], failures(6, start=START - timedelta(seconds=30)))
            clock.advance(5)

            def work(services: Services) -> None:
                for _ in range(15):
                    detect_once(services)
                    deliver_once(services)

            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                for future in [pool.submit(work, s) for s in replicas * 2]:
                    future.result(timeout=120)
            delivered = sorted((c.kind, c.payload.rule) for c in notifier.calls)
            stored = [row[0] for row in alert_rows(replicas[0])]
        finally:
            for services in replicas:
                stop_services(services)
            postgres.drop(url)
        expected = (
            [
                ("new", "brute_force_account"),
                ("new", "brute_force_address"),
                ("new", "delete_outside_cleanup"),
                ("new", "out_of_role"),
            ],
            [
                "brute_force_account",
                "brute_force_address",
                "delete_outside_cleanup",
                "off_hours_write",
                "out_of_role",
            ],
        )
        assert expected == (delivered, stored)


def test_access_from_outside_allow_cidrs_is_critical(db_url, tmp_path, clock):
    """With `detect.allow_cidrs` declared, the capture (all from 127.0.0.1) raises one critical
    source_not_allowed alert, queued for Slack; without it, none (the test above)."""
    services = start_services(
        db_url, tmp_path, clock, REGISTRY_MONITOR_DETECT_ALLOW_CIDRS="10.0.0.0/8,192.168.0.0/16"
    )
    try:
        post_scenario(services)
        clock.advance(5)
        run(services, clock)
        rows = [row for row in alert_rows(services) if row[0] == "source_not_allowed"]
        queued = [row for row in outbox_rows(services) if row[1] == "source_not_allowed"]
    finally:
        stop_services(services)

    assert [("source_not_allowed", "alert", "critical", (("remote_ip", "127.0.0.1"),), 54)] == rows
    assert [("new", "source_not_allowed", "pending")] == queued[:1]
