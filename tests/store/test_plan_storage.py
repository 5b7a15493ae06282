"""Stored cleanup plans: compact rows that load back, a retention that spares unfinished applies,
and the planner's input streamed per repository exactly as a plain read of the tables gives it."""

from __future__ import annotations

import os
import re
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from monitor.cleanup.journal import JournalEntry, Outcome, SavedManifest
from monitor.cleanup.model import Blob, ManifestInfo, PullRecord, RepositoryState, TagState
from monitor.cleanup.plan import Decision, DigestAction, Plan, Reason, TagDecision, diff_plans
from monitor.cleanup.planner import plan_repositories
from monitor.cleanup.policy import load_policies
from monitor.cleanup.stored_plan import as_stored
from monitor.errors import NotFound
from monitor.events import Client
from monitor.pipeline import plan_processes
from monitor.pipeline.cleanup import PlanOutcome, PolicySet
from monitor.pipeline.cleanup import make_plan as plan_and_store
from monitor.store.cleanup_plans import (
    PlanState,
    latest_selection,
    latest_summary,
    load_decisions,
    load_plan,
    plan_pages,
    plan_summary,
    prune_plans,
    query_plans,
    save_plan,
    set_plan_state,
)
from monitor.store.cleanup_tables import (
    CleanupJournalRow,
    CleanupPlanRow,
    ManifestInfoRow,
    SavedManifestRow,
)
from monitor.store.coverage import record_heartbeat
from monitor.store.inventory import save_manifest_info
from monitor.store.journal import record_entry, save_manifest
from monitor.store.migrate import upgrade
from monitor.store.planner_input import planning_coverage, split_points, stream_repositories
from monitor.store.schema import TagPullRow, TagStateRow
from tests.cleanup.factories import NOW
from tests.cleanup.test_planner_properties import policies, registries
from tests.cleanup.test_stored_plan import FORMAT_3, FORMAT_3_PLAN

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32


def policies_of_one() -> tuple[Any, ...]:
    """Delete every tag of every repository."""
    return tuple(
        load_policies(
            "policies:\n  - name: all\n    repositories: ['**']\n"
            "    delete:\n      - {tags: ['*']}\n"
        )
    )


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    built = create_engine(db_url)
    upgrade(built)
    yield built
    built.dispose()


def make_plan(day: int) -> Plan:
    decisions = (
        TagDecision("team/app", "latest", DIGEST[:-1] + "c", Decision.PROTECTED, Reason.PINNED),
        TagDecision("team/app", f"pr-{day}", DIGEST, Decision.DELETE, Reason.DELETE_RULE, "p"),
    )
    actions = (DigestAction("team/app", DIGEST, (f"pr-{day}",), Reason.DELETE_RULE, "p"),)
    return Plan(T0 + timedelta(days=day), decisions, actions, 100 + day)


class TestStoredPlans:
    def test_a_plan_is_stored_compressed_and_loads_back(self, engine: Engine) -> None:
        """The row holds the encoded plan only; loading gives the same plan, without the
        digests of the tags it keeps."""
        plan = make_plan(1)
        with Session(engine) as session, session.begin():
            save_plan(session, plan, policy_digest="d")
        with Session(engine) as session:
            row = session.get(CleanupPlanRow, plan.plan_id)
            assert row is not None
            stored = (row.body, row.encoded is not None)
            loaded = load_plan(session, plan.plan_id)[1]
        assert ((None, True), as_stored(plan)) == (stored, loaded)

    def test_decisions_and_summary_read_without_the_actions(self, engine: Engine) -> None:
        """`load_decisions` gives the decisions `load_plan` gives (2,500: three chunks read one
        at a time) and `plan_summary` its summary, also for a plan stored as JSON before; an
        unknown plan is NotFound to both."""
        deleted = [f"t-{n:04}" for n in range(1, 2500, 2)]
        decisions = tuple(
            TagDecision("team/app", f"t-{n:04}", DIGEST, Decision.DELETE, Reason.DELETE_RULE, "p")
            if n % 2
            else TagDecision("team/app", f"t-{n:04}", None, Decision.KEEP, Reason.NO_DELETE_RULE)
            for n in range(2500)
        )
        actions = (DigestAction("team/app", DIGEST, tuple(deleted), Reason.DELETE_RULE, "p"),)
        plan = Plan(T0, decisions, actions, 7)
        with Session(engine) as session, session.begin():
            save_plan(session, plan, policy_digest="d")
        for stored_as in ("compact", "json"):
            if stored_as == "json":
                with Session(engine) as session, session.begin():
                    row = session.get(CleanupPlanRow, plan.plan_id)
                    assert row is not None
                    row.body, row.encoded = orjson.dumps(plan.to_dict()).decode(), None
            with Session(engine) as session:
                summary, whole = load_plan(session, plan.plan_id)
                assert ((summary, list(whole.decisions)), summary) == (
                    load_decisions(session, plan.plan_id),
                    plan_summary(session, plan.plan_id),
                )
                assert list(whole.decisions) == list(decisions)
                for read in (load_decisions, plan_summary):
                    with pytest.raises(NotFound):
                        read(session, "no-such-plan")

    def test_a_plan_stored_as_json_before_still_loads(self, engine: Engine) -> None:
        """Rows written before the compact form (JSON in `body`) load as before."""
        plan = make_plan(2)
        with Session(engine) as session, session.begin():
            save_plan(session, plan, policy_digest="d")
            row = session.get(CleanupPlanRow, plan.plan_id)
            assert row is not None
            row.body, row.encoded = orjson.dumps(plan.to_dict()).decode(), None
        with Session(engine) as session:
            assert plan == load_plan(session, plan.plan_id)[1]

    def test_a_plan_stored_in_the_format_before_loads_whole(self, engine: Engine) -> None:
        """A row holding format 3 (every tag's digest) loads with all of them, and is the
        selection the next plan's diff reads."""
        with Session(engine) as session, session.begin():
            save_plan(session, FORMAT_3_PLAN, policy_digest="d")
            row = session.get(CleanupPlanRow, FORMAT_3_PLAN.plan_id)
            assert row is not None
            row.encoded = FORMAT_3
        with Session(engine) as session:
            loaded = load_plan(session, FORMAT_3_PLAN.plan_id)[1]
            latest = latest_selection(session)
        assert latest is not None
        assert (FORMAT_3_PLAN, FORMAT_3_PLAN.selection()) == (loaded, latest[1])

    def test_summaries_never_read_the_stored_plans(self, engine: Engine) -> None:
        """Listing plans, the newest summary, a plan's pages and the newest plan's selection
        (the next plan's diff) select no plan whole: a stored plan is 17 MB at 517k actions
        (the pages read slices of it, by their own statements)."""
        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        with Session(engine) as session, session.begin():
            for day in (1, 2):
                save_plan(session, make_plan(day), policy_digest="p")
        event.listen(engine, "before_cursor_execute", record)
        try:
            with Session(engine) as session:
                listed, _ = query_plans(session)
                newest = latest_summary(session)
                older = latest_summary(session, before=listed[0].id)
                _, pages = plan_pages(session, listed[0].id)
                page = pages.decisions(0, 10)
                selection = latest_selection(session)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        whole = [
            s for s in statements if re.search(r"(?<!length\()cleanup_plans\.(encoded|body)\b", s)
        ]
        assert ([], 2, listed[0], listed[1], 2, (listed[0], make_plan(2).selection())) == (
            whole,
            len(listed),
            newest,
            older,
            len(page),
            selection,
        )

    def test_a_plan_deleted_while_its_pages_are_read(self, engine: Engine) -> None:
        """Pruned after its pages were opened, the plan's next page is NotFound (404), not an
        unreadable plan or a store error."""
        with Session(engine) as session, session.begin():
            plan_id = save_plan(session, make_plan(1), policy_digest="p").id
        with Session(engine) as session:
            _, pages = plan_pages(session, plan_id)
            with Session(engine) as other, other.begin():
                other.execute(delete(CleanupPlanRow).where(CleanupPlanRow.id == plan_id))
            with pytest.raises(NotFound):
                pages.decisions(0, 10)


class TestPrunePlans:
    def test_keeps_the_newest_and_every_unfinished_apply(self, engine: Engine) -> None:
        """With keep=2 of six plans: the two newest stay, and so do the old plans whose apply is
        running or failed; the others go with their saved manifests, their journal stays."""
        plans = [make_plan(day) for day in range(6)]
        with Session(engine) as session, session.begin():
            for plan in plans:
                save_plan(session, plan, policy_digest="d")
            set_plan_state(session, plans[0].plan_id, PlanState.APPLYING)
            set_plan_state(session, plans[1].plan_id, PlanState.FAILED)
            set_plan_state(session, plans[2].plan_id, PlanState.APPLIED, at=T0)
            for plan in (plans[2], plans[4]):
                saved = SavedManifest(plan.plan_id, "team/app", DIGEST, "m", b"{}", ("pr",))
                save_manifest(session, saved, at=T0)
            entry = JournalEntry(
                plans[2].plan_id, "team/app", DIGEST, ("pr-2",), Outcome.DELETED, "rule", T0
            )
            record_entry(session, entry)
        with Session(engine) as session, session.begin():
            pruned = prune_plans(session, keep=2)
        with Session(engine) as session:
            left = {p.id for p in query_plans(session, limit=100)[0]}
            saved_for = set(session.scalars(select(SavedManifestRow.plan_id)))
            journal = session.scalar(select(func.count()).select_from(CleanupJournalRow))
        ids = [p.plan_id for p in plans]
        assert (
            [ids[2], ids[3]],
            {ids[0], ids[1], ids[4], ids[5]},
            {ids[4]},
            1,
        ) == (pruned, left, saved_for, journal)

    def test_an_unfinished_apply_of_the_format_before_is_kept_and_loads(
        self, engine: Engine
    ) -> None:
        """An old plan in format 3 whose apply failed outlives pruning and still loads whole,
        so its apply can run again."""
        newer = [make_plan(day) for day in range(30, 33)]
        with Session(engine) as session, session.begin():
            save_plan(session, FORMAT_3_PLAN, policy_digest="d")
            row = session.get(CleanupPlanRow, FORMAT_3_PLAN.plan_id)
            assert row is not None
            row.encoded = FORMAT_3
            set_plan_state(session, FORMAT_3_PLAN.plan_id, PlanState.FAILED)
            for plan in newer:
                save_plan(session, plan, policy_digest="d")
        with Session(engine) as session, session.begin():
            pruned = prune_plans(session, keep=1)
        with Session(engine) as session:
            summary, loaded = load_plan(session, FORMAT_3_PLAN.plan_id)
        assert ([newer[0].plan_id, newer[1].plan_id], PlanState.FAILED, FORMAT_3_PLAN) == (
            pruned,
            summary.state,
            loaded,
        )


REPOSITORIES = ["team/app", "Team/app", "team-x/a", "team/app2", "ä/b", "_lib/x", "Z/z"]
TAGS = ["v1", "V1", "v1.0", "v-1", "latest", "ä"]
at = st.integers(0, 10_000).map(lambda s: T0 + timedelta(seconds=s))
tag_rows = st.lists(
    st.tuples(
        st.sampled_from(REPOSITORIES),
        st.sampled_from(TAGS),
        st.sampled_from([None, DIGEST, "sha256:" + "cd" * 32]),
        at,
        st.none() | at,
        st.none() | at,
    ),
    unique_by=lambda r: (r[0], r[1]),
    max_size=20,
)
pull_rows = st.lists(
    st.tuples(
        st.sampled_from(REPOSITORIES),
        st.sampled_from(TAGS),
        st.sampled_from(["GET", "HEAD"]),
        st.sampled_from(["docker", "kubelet", "other"]),
        at,
    ),
    unique_by=lambda r: r[:4],
    max_size=20,
)
manifest_rows = st.lists(
    st.tuples(
        st.sampled_from(REPOSITORIES),
        st.sampled_from([DIGEST, "sha256:" + "cd" * 32, "sha256:" + "01" * 32]),
        st.integers(0, 5000),
    ),
    unique_by=lambda r: r[:2],
    max_size=10,
)


def reference(tags, pulls, manifests) -> list[RepositoryState]:
    """The planner's input computed directly from the rows, in Python."""
    pulled: dict[tuple[str, str], list[PullRecord]] = defaultdict(list)
    for repo, tag, method, client, when in sorted(pulls):
        pulled[(repo, tag)].append(PullRecord(method, Client(client), when))
    live: dict[str, list[TagState]] = defaultdict(list)
    for repo, tag, digest, first, pushed, deleted in sorted(tags, key=lambda r: r[:2]):
        if deleted is None and digest is not None:
            pulls_of = tuple(pulled.get((repo, tag), ()))
            live[repo].append(
                TagState(repo, tag, digest, first, pushed or first, "m", None, pulls_of)
            )
    infos: dict[str, list[ManifestInfo]] = defaultdict(list)
    for repo, digest, size in sorted(manifests):
        infos[repo].append(
            ManifestInfo(repo, digest, "m", size, (Blob(digest[:-1] + "9", size),), (), T0)
        )
    return [
        RepositoryState(name, live.get(name, []), infos.get(name, []))
        for name in sorted(live.keys() | infos.keys())
    ]


def in_order(repository: RepositoryState) -> RepositoryState:
    """`repository` with its tags, their pulls and its manifests in the reference's order (the
    stream orders by repository alone)."""
    tags = sorted(repository.tags, key=lambda t: t.tag)
    return RepositoryState(
        repository.name,
        [t._replace(pulls=tuple(sorted(t.pulls))) for t in tags],
        sorted(repository.manifests, key=lambda m: m.digest),
    )


class TestStreamRepositories:
    @settings(
        max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(tags=tag_rows, pulls=pull_rows, manifests=manifest_rows)
    def test_equals_a_plain_read_of_the_tables(self, engine: Engine, tags, pulls, manifests):
        """Whatever the rows (names differing in case, punctuation and accents), the stream
        gives each repository once, in code-point order, with its live tags, their pulls and
        its manifests (in any order within the repository), as grouping the tables in Python
        does."""
        factory = sessionmaker(engine)
        with factory() as session, session.begin():
            for table in (TagStateRow, TagPullRow, ManifestInfoRow):
                session.execute(delete(table))
            session.add_all(
                TagStateRow(
                    repository=repo, tag=tag, digest=digest, media_type="m", first_seen_at=first,
                    last_pushed_at=pushed, last_pushed_by=None, last_pulled_at=None,
                    pull_count=0, deleted_at=deleted,
                )
                for repo, tag, digest, first, pushed, deleted in tags
            )  # fmt: skip
            session.add_all(
                TagPullRow(
                    repository=repo, tag=tag, http_method=method, client=client,
                    last_pulled_at=when, pull_count=1,
                )
                for repo, tag, method, client, when in pulls
            )  # fmt: skip
            session.add_all(
                ManifestInfoRow(
                    repository=repo, digest=digest, media_type="m", size=size, children="[]",
                    blobs=orjson.dumps([[digest[:-1] + "9", size]]).decode(), pushed_at=T0,
                    learned_at=T0,
                )
                for repo, digest, size in manifests
            )  # fmt: skip
        with factory() as session:
            streamed = list(stream_repositories(session))
        assert reference(tags, pulls, manifests) == [in_order(r) for r in streamed]

    def test_read_ahead_in_small_batches_and_stopped_early(
        self, engine: Engine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Fetched two rows at a time (each read many batches ahead of the merge), the stream
        is the same; stopped after its first repository, it leaves the session usable."""
        factory = sessionmaker(engine)
        names = [f"team/app-{i}" for i in range(5)]
        with factory() as session, session.begin():
            for repo in names:
                for n in range(3):
                    digest = f"sha256:{n:064x}"
                    session.add(
                        TagStateRow(
                            repository=repo, tag=f"v{n}", digest=digest, media_type="m",
                            first_seen_at=T0, last_pushed_at=T0, last_pushed_by=None,
                            last_pulled_at=None, pull_count=1, deleted_at=None,
                        )
                    )  # fmt: skip
                    session.add(
                        TagPullRow(
                            repository=repo, tag=f"v{n}", http_method="GET", client="docker",
                            last_pulled_at=T0, pull_count=1,
                        )
                    )  # fmt: skip
                    session.add(
                        ManifestInfoRow(
                            repository=repo, digest=digest, media_type="m", size=n,
                            children="[]", blobs="[]", pushed_at=T0, learned_at=T0,
                        )
                    )  # fmt: skip
        with factory() as session:
            whole = list(stream_repositories(session))
        monkeypatch.setattr("monitor.store.planner_input.STREAM_ROWS", 2)
        with factory() as session:
            assert whole == list(stream_repositories(session))
            stream = stream_repositories(session)
            assert whole[0] == next(stream)
            stream.close()
            assert 15 == session.scalar(select(func.count()).select_from(TagStateRow))
        assert names == [r.name for r in whole]
        assert [3] * 5 == [len(r.tags) for r in whole]
        assert [3] * 5 == [len(r.manifests) for r in whole]
        assert all(len(t.pulls) == 1 for r in whole for t in r.tags)


def write_registry(session: Session, tags: list[TagState], manifests: list[ManifestInfo]) -> None:
    """The generated tags (one pull row per tag, method and client: the latest) and manifests
    as the store holds them."""
    for table in (TagStateRow, TagPullRow, ManifestInfoRow, CleanupPlanRow):
        session.execute(delete(table))
    for state in tags:
        session.add(
            TagStateRow(
                repository=state.repository, tag=state.tag, digest=state.digest,
                media_type=state.media_type, first_seen_at=state.first_seen_at,
                last_pushed_at=state.last_pushed_at, last_pushed_by=None, last_pulled_at=None,
                pull_count=len(state.pulls), deleted_at=state.deleted_at,
            )
        )  # fmt: skip
        latest: dict[tuple[str, str], datetime] = {}
        for pull in state.pulls:
            key = (pull.http_method, pull.client.value)
            latest[key] = max(latest.get(key, pull.last_pulled_at), pull.last_pulled_at)
        session.add_all(
            TagPullRow(
                repository=state.repository, tag=state.tag, http_method=method, client=client,
                last_pulled_at=at, pull_count=1,
            )
            for (method, client), at in latest.items()
        )  # fmt: skip
    session.flush()
    for info in manifests:
        save_manifest_info(session, info, now=T0)
    for at in (NOW - timedelta(days=1000), NOW):  # listening all along: pulls decide
        record_heartbeat(
            session, replica="t", source="notification", now=at, max_gap=timedelta(days=1001)
        )


class TestMakePlanOnAGeneratedStore:
    @settings(
        max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(registry=registries(), chosen=policies(), earlier=policies())
    def test_stored_plan_and_diff_are_the_planners(
        self, engine: Engine, registry, chosen, earlier
    ) -> None:
        """`make_plan`, which plans and stores a repository at a time, stores the planner's
        plan over the store's input (as stored: no digest on the tags it keeps) under the
        planner's plan id, and diffs it against the plan before exactly as `diff_plans`."""
        tags, manifests = registry
        factory = sessionmaker(engine)
        with factory() as session, session.begin():
            write_registry(session, tags, manifests)
        outcomes = [
            plan_and_store(factory, policies=PolicySet(policies_, name), now=NOW)
            for name, policies_ in (("earlier", earlier), ("chosen", chosen))
        ]
        with factory() as session:
            stored = [load_plan(session, o.summary.id)[1] for o in outcomes]
            coverage = planning_coverage(session, now=NOW)
            planned = [
                plan_repositories(p, stream_repositories(session), coverage, NOW)
                for p in (earlier, chosen)
            ]
        # a plan with the same actions at the same time has the same id: stored once, the first
        same = planned[0].plan_id == planned[1].plan_id
        expected = [as_stored(planned[0]), as_stored(planned[0 if same else 1])]
        diff = diff_plans(None if same else planned[0], planned[1])
        assert (expected, [p.plan_id for p in planned], None if same else planned[0].plan_id) == (
            stored,
            [o.summary.id for o in outcomes],
            outcomes[1].previous_id,
        )
        assert diff == outcomes[1].diff


def stored_plan(factory: sessionmaker[Session], outcome: PlanOutcome) -> tuple[Plan, int]:
    with factory() as session:
        summary, loaded = load_plan(session, outcome.summary.id)
    return loaded, summary.bytes_freed


def forget_plans(factory: sessionmaker[Session]) -> None:
    with factory() as session, session.begin():
        session.execute(delete(CleanupPlanRow))


class TestMakePlanInProcesses:
    @settings(
        max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(registry=registries(), chosen=policies())
    def test_ranges_planned_side_by_side_store_the_same_plan(
        self, engine: Engine, monkeypatch: pytest.MonkeyPatch, registry, chosen
    ) -> None:
        """Planned by up to three processes (the repositories cut into ranges of about as many
        rows, each range after the first planned by a forked process), the store holds the
        plan one process stores: the same decisions, actions, id, bytes freed and diff."""
        monkeypatch.setattr(plan_processes, "SPLIT_MIN_ROWS", 0)
        tags, manifests = registry
        factory = sessionmaker(engine)
        with factory() as session, session.begin():
            write_registry(session, tags, manifests)
            expected_ranges = len(split_points(session, 3)) + 1
        policy_set = PolicySet(chosen, "chosen")
        alone = plan_and_store(factory, policies=policy_set, now=NOW)
        planned_alone = stored_plan(factory, alone)
        forget_plans(factory)
        side_by_side = plan_and_store(factory, policies=policy_set, now=NOW, processes=3)
        assert (alone.processes, side_by_side.processes) == (1, expected_ranges)
        assert (planned_alone, alone.summary.id, alone.diff) == (
            stored_plan(factory, side_by_side),
            side_by_side.summary.id,
            side_by_side.diff,
        )

    def test_repositories_cut_into_ranges_of_about_as_many_rows(self, engine: Engine) -> None:
        """Six repositories of one row each and one of six: in three parts, a range starts at
        the repository whose middle lies past each third (the big one a range of its own); in
        two, at the big one; fewer rows than asked for, or one part, are not cut."""
        factory = sessionmaker(engine)
        names = ["a", "b", "c", "d", "e", "f", *["z"] * 6]
        with factory() as session, session.begin():
            session.add_all(
                ManifestInfoRow(
                    repository=name, digest=f"sha256:{n:064x}", media_type="m", size=1,
                    children="[]", blobs="[]", pushed_at=T0, learned_at=T0,
                )
                for n, name in enumerate(names)
            )  # fmt: skip
        with factory() as session:
            assert (["e", "z"], ["z"], [], []) == (
                split_points(session, 3),
                split_points(session, 2),
                split_points(session, 3, min_rows=13),
                split_points(session, 1),
            )

    def test_a_failed_range_fails_the_plan_and_stores_nothing(
        self, engine: Engine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A forked planner that raises, or ends without its part, fails the plan with what
        happened; nothing is stored and no process is left behind."""
        monkeypatch.setattr(plan_processes, "SPLIT_MIN_ROWS", 0)
        factory = sessionmaker(engine)
        tags = [
            TagState(f"team/app-{i}", "v1", DIGEST, T0, T0, "m") for i in range(4)
        ]  # fmt: skip
        with factory() as session, session.begin():
            write_registry(session, tags, [])
        policy_set = PolicySet(policies_of_one(), "one")

        def broken(self: Any, span: Any) -> Any:
            raise RuntimeError("the store went away")

        def gone(self: Any, span: Any) -> Any:
            os._exit(3)

        for fault, message in ((broken, "RuntimeError: the store went away"), (gone, "status")):
            monkeypatch.setattr(plan_processes.RangePlanner, "__call__", fault)
            with pytest.raises(plan_processes.PlanningError, match=message):
                plan_and_store(factory, policies=policy_set, now=NOW, processes=2)
            with factory() as session:
                assert latest_summary(session) is None
            with pytest.raises(ChildProcessError):
                os.waitpid(-1, os.WNOHANG)

    def test_one_process_while_another_thread_runs(
        self, engine: Engine, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With another thread running (as in `serve`, whose copy would inherit the locks it
        holds), the plan is made in this process alone."""
        monkeypatch.setattr(plan_processes, "SPLIT_MIN_ROWS", 0)
        factory = sessionmaker(engine)
        tags = [TagState(f"team/app-{i}", "v1", DIGEST, T0, T0, "m") for i in range(4)]
        with factory() as session, session.begin():
            write_registry(session, tags, [])
        release = threading.Event()
        other = threading.Thread(target=release.wait)
        other.start()
        try:
            outcome = plan_and_store(
                factory, policies=PolicySet(policies_of_one(), "one"), now=NOW, processes=2
            )
        finally:
            release.set()
            other.join()
        assert outcome.processes == 1
