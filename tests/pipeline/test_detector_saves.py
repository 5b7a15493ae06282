"""The detector's state saved in parts: a save rewrites only what its passes changed.

Each account's learned addresses and each repository's protected tags are a row of
`detector_parts`; the detector's own row keeps the windows and incidents (a version 3 core).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select, update

from monitor.detect.saved_state import BASELINE, part_key
from monitor.detect.state import Baseline, DetectorState, state_to_json, to_us
from monitor.events import Action, Event, Source
from monitor.pipeline.detection import Progress, detect_once, detect_pass
from monitor.pipeline.detector_saves import load_state
from monitor.runtime import Services
from monitor.store.schema import DetectorPartRow, DetectorStateRow
from tests.fixture_events import make_event
from tests.pipeline.support import START, Clock, store

SETTLE = timedelta(seconds=2)


def pulls(*sources: tuple[str, str], at: datetime = START) -> list[Event]:
    """One pull by each (account, address), ten seconds before `at`."""
    return [
        make_event(actor=actor, remote_ip=address, occurred_at=at - timedelta(seconds=10))
        for actor, address in sources
    ]


def saving_pass(services: Services, clock: Clock, progress: Progress | None = None) -> None:
    """A pass that saves what it judged (as one that changes an alert does)."""
    clock.advance(3)
    detect_pass(
        services.session_factory, services.detector, now=clock(), settle=SETTLE,
        progress=progress, save_every=timedelta(0),
    )  # fmt: skip


def parts(services: Services) -> dict[str, dict[str, Any]]:
    with services.session_factory() as session:
        rows = session.execute(
            select(DetectorPartRow.part, DetectorPartRow.body).where(
                DetectorPartRow.name == "default"
            )
        ).all()
    return {part: orjson.loads(body) for part, body in rows}


def core_version(services: Services) -> int:
    with services.session_factory() as session:
        state = session.scalar(select(DetectorStateRow.state))
    assert state is not None
    version: int = orjson.loads(state)["version"]
    return version


def saved_state(services: Services, clock: Clock) -> DetectorState:
    with services.session_factory() as session:
        return load_state(session, "default", now=clock())[1]


class TestSavedInParts:
    def test_each_account_learned_is_a_part_of_its_own_and_the_core_holds_the_rest(
        self, live, clock
    ):
        store(live, pulls(("alice", "10.0.0.1"), ("bob", "10.0.0.2")))
        progress = Progress()
        saving_pass(live, clock, progress)
        saved = parts(live)
        assert {part_key(BASELINE, "alice"), part_key(BASELINE, "bob")} <= set(saved)
        assert saved[part_key(BASELINE, "alice")]["addresses"].keys() == {"10.0.0.1"}
        assert 3 == core_version(live)
        assert progress.state == saved_state(live, clock)  # what a restart reads back

    def test_a_save_rewrites_only_the_parts_its_passes_changed(self, live, clock):
        """bob's part, changed in the store behind the job's back, is not written again by a
        pass that saw only alice: the pass wrote alice's part and left bob's row alone."""
        store(live, pulls(("alice", "10.0.0.1"), ("bob", "10.0.0.2")))
        progress = Progress()
        saving_pass(live, clock, progress)
        bob = part_key(BASELINE, "bob")
        marked = {**parts(live)[bob], "addresses": {"10.0.0.2": 1, "10.9.9.9": 2}}
        with live.session_factory() as session, session.begin():
            session.execute(
                update(DetectorPartRow)
                .where(DetectorPartRow.part == bob)
                .values(body=orjson.dumps(marked).decode())
            )
        store(live, pulls(("alice", "10.0.0.3")))
        saving_pass(live, clock, progress)
        saved = parts(live)
        assert {"10.0.0.1", "10.0.0.3"} == saved[part_key(BASELINE, "alice")]["addresses"].keys()
        assert marked == saved[bob]

    def test_an_account_forgotten_loses_its_part(self, live, clock):
        """Unseen for `forget_after` (28 days), an account's addresses are swept, and the save
        deletes its row."""
        store(live, pulls(("alice", "10.0.0.1"), ("bob", "10.0.0.2")))
        progress = Progress()
        saving_pass(live, clock, progress)
        clock.advance(timedelta(days=20).total_seconds())
        store(live, pulls(("alice", "10.0.0.1"), at=clock()))
        for _ in range(2):
            clock.advance(timedelta(days=5).total_seconds())
            saving_pass(live, clock, progress)
        assert {part_key(BASELINE, "alice")} == set(parts(live))

    def test_a_state_saved_in_one_document_is_read_then_saved_in_parts(self, live, clock):
        """A version 2 row (before parts) is read as it is; the next save writes a version 3
        core and its parts, and deletes a part left from an earlier save in parts."""
        learned = DetectorState(
            baselines={"carol": Baseline(since=to_us(START), addresses={"10.0.0.7": to_us(START)})}
        )
        stale = part_key(BASELINE, "dave")
        with live.session_factory() as session, session.begin():
            session.add(
                DetectorStateRow(
                    name="default", state=state_to_json(learned), cursor=0, updated_at=START
                )
            )
            session.add(DetectorPartRow(name="default", part=stale, body='{"actor":"dave"}'))
        assert learned == saved_state(live, clock)
        store(live, pulls(("alice", "10.0.0.1")))
        saving_pass(live, clock)
        saved = parts(live)
        assert 3 == core_version(live)
        assert {part_key(BASELINE, "alice"), part_key(BASELINE, "carol")} == set(saved)
        assert {"10.0.0.7"} == saved[part_key(BASELINE, "carol")]["addresses"].keys()


class TestFlood:
    def test_windows_beyond_the_cap_are_dropped_before_the_save_and_counted(self, live, clock):
        """30 failed logins, each from a new account and a new address, with a detector that
        keeps 10 windows of each kind: the saved state holds 10 of each, and
        `registry_monitor_detection_windows_dropped_total` counts the others."""
        live.detector.max_windows = 10
        store(
            live,
            [
                make_event(
                    source=Source.LOG,
                    action=Action.AUTH_FAILURE,
                    occurred_at=START - timedelta(seconds=30 - i),
                    target_kind=None,
                    repository=None,
                    digest=None,
                    actor=f"user{i}",
                    remote_ip=f"10.0.1.{i}",
                )
                for i in range(30)
            ],
        )
        clock.advance(3)
        detect_once(live)
        saved = saved_state(live, clock)
        dropped = live.metrics.registry.get_sample_value(
            "registry_monitor_detection_windows_dropped_total"
        )
        assert (10, 10) == (len(saved.counts), len(saved.distinct))
        assert dropped is not None and dropped >= 20 + 20
