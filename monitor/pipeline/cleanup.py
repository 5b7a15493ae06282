"""Cleanup runs against the store: plan and store, apply a stored plan, restore one.

Each function takes its resources (session factory, registry client, clock, metrics) as
arguments; the scheduled jobs (monitor.pipeline.cleanup_jobs) and the command line call them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
from collections.abc import Callable, Collection, Iterator
from datetime import datetime, timedelta

import structlog

from monitor.alerting.render import escape_mrkdwn
from monitor.cleanup.apply import ApplyOptions, ApplyResult, apply, restore
from monitor.cleanup.journal import JournalEntry, Outcome, SavedManifest, SkipReason
from monitor.cleanup.model import TagRef
from monitor.cleanup.plan import Plan, PlanDiff, diff_selections
from monitor.cleanup.planner import Planner, gc_paused
from monitor.cleanup.policy import Policy, load_policies, parse_image_references
from monitor.cleanup.registry_client import (
    Credentials,
    HttpRegistryClient,
    RegistryClient,
    make_http_client,
)
from monitor.cleanup.stored_plan import PlanWriter
from monitor.clock import Clock
from monitor.errors import ConfigError
from monitor.observability.metrics import Metrics
from monitor.pipeline import plan_processes
from monitor.pipeline.plan_processes import Forked, RangePlanner, can_fork, ranges
from monitor.settings import CleanupSettings
from monitor.store.cleanup_plans import (
    PlanState,
    PlanSummary,
    latest_selection,
    load_plan,
    prune_plans,
    save_encoded,
    set_plan_state,
)
from monitor.store.engine import SessionFactory
from monitor.store.journal import deleted_digests, record_entry, save_manifest, saved_manifests
from monitor.store.planner_input import planning_coverage, split_points, stream_repositories

log = structlog.get_logger("monitor.cleanup")
SummarySender = Callable[[str], None]
BREAKER_REASONS = frozenset({SkipReason.RUN_LIMIT_REACHED, SkipReason.REPOSITORY_SHARE_EXCEEDED})


@dataclasses.dataclass(frozen=True, slots=True)
class PolicySet:
    policies: tuple[Policy, ...]
    digest: str


def load_policy_set(settings: CleanupSettings) -> PolicySet:
    """The policies (and deployed set) named by the settings, with a digest of both texts."""
    if settings.policies_file is None:
        raise ConfigError("cleanup.policies_file", "cleanup needs a policies file")
    try:
        text = settings.policies_file.read_text(encoding="utf-8")
        deployed_text = (
            settings.deployed_file.read_text(encoding="utf-8") if settings.deployed_file else ""
        )
    except OSError as exc:
        raise ConfigError("cleanup.policies_file", f"cannot read: {exc.strerror}") from exc
    deployed = parse_image_references(deployed_text)
    digest = hashlib.sha256(f"{text}\0{deployed_text}".encode()).hexdigest()
    return PolicySet(load_policies(text, deployed=deployed), digest)


@contextlib.contextmanager
def open_registry(
    settings: CleanupSettings, *, timeout_seconds: float | None = None, retries: int = 3
) -> Iterator[HttpRegistryClient]:
    """A registry client for `cleanup.registry_url`; closed when the block ends (calls time
    out after `cleanup.timeout_seconds` unless `timeout_seconds` is shorter)."""
    if settings.registry_url is None:
        raise ConfigError("cleanup.registry_url", "cleanup needs the registry's URL")
    credentials = None
    if settings.username is not None and settings.password is not None:
        credentials = Credentials(settings.username, settings.password.reveal())
    with make_http_client(
        ca_file=settings.ca_file,
        insecure=settings.insecure_skip_tls_verify,
        timeout_seconds=min(settings.timeout_seconds, timeout_seconds or settings.timeout_seconds),
    ) as http:
        yield HttpRegistryClient(
            settings.registry_url, http=http, credentials=credentials, retries=retries
        )


class SqlJournal:
    """ApplyJournal on the store; every call commits on its own, so a crashed run can resume."""

    def __init__(self, session_factory: SessionFactory, *, clock: Clock) -> None:
        self.session_factory = session_factory
        self.clock = clock

    def done(self, plan_id: str) -> set[tuple[str, str]]:
        with self.session_factory() as session:
            return deleted_digests(session, plan_id)

    def save_manifest(self, saved: SavedManifest) -> None:
        with self.session_factory() as session, session.begin():
            save_manifest(session, saved, at=self.clock())

    def saved(self, plan_id: str) -> list[SavedManifest]:
        with self.session_factory() as session:
            return saved_manifests(session, plan_id)

    def record(self, entry: JournalEntry) -> None:
        with self.session_factory() as session, session.begin():
            record_entry(session, entry)


@dataclasses.dataclass(frozen=True, slots=True)
class PlanOutcome:
    """A plan made and stored (`load_plan(session, summary.id)` gives it back), how it
    differs from the plan before it, and how many processes planned it."""

    summary: PlanSummary
    previous_id: str | None
    diff: PlanDiff
    processes: int = 1


def make_plan(
    session_factory: SessionFactory,
    *,
    policies: PolicySet,
    now: datetime,
    gap_tolerance: timedelta = timedelta(0),
    metrics: Metrics | None = None,
    plans_keep: int | None = None,
    processes: int = 1,
) -> PlanOutcome:
    """Plan from what the store knows at `now`, store the plan, diff it with the previous one;
    with `plans_keep`, prune the stored plans beyond it (see `prune_plans`).

    The store's repositories stream through the planner into the plan's stored form one at a
    time: memory holds one repository, what the plan frees so far and the stored form (about
    2 MB for 100k tags), never the whole plan. With `processes` above 1 and a large store, up
    to that many processes plan ranges of the repositories side by side
    (monitor.pipeline.plan_processes); the stored plan is the same."""
    with session_factory() as session, session.begin():
        previous = latest_selection(session)
        coverage = planning_coverage(session, now=now)
        points: list[str] = []
        if processes > 1 and can_fork():
            points = split_points(session, processes, min_rows=plan_processes.SPLIT_MIN_ROWS)
        spans = ranges(points)
        planner = Planner(policies.policies, coverage, now, gap_tolerance=gap_tolerance)
        writer = PlanWriter(now)
        with gc_paused():
            run = RangePlanner(session_factory, policies.policies, coverage, now, gap_tolerance)
            children: list[Forked] = []
            try:
                for span in spans[1:]:
                    children.append(Forked(functools.partial(run, span)))
                first = stream_repositories(
                    session, start=spans[0].start, stop=spans[0].stop, read_ahead=not children
                )
                for part in planner.each(first):
                    writer.add(part.name, part.decisions, part.actions)
                for child in children:
                    planned = child.result()
                    writer.absorb(planned.part)
                    planner.freed.absorb(planned.freed)
                    del planned  # copied: not held through the save
            finally:
                for child in children:
                    child.stop()
            encoded = writer.finish(planner.bytes_freed())
        summary = save_encoded(session, encoded, policy_digest=policies.digest)
        if plans_keep is not None:
            prune_plans(session, keep=plans_keep)
    if previous is None or previous[0].id == summary.id:
        diff = diff_selections({}, encoded.selection)
        return PlanOutcome(summary, None, diff, len(spans))
    diff = diff_selections(previous[1], encoded.selection)
    return PlanOutcome(summary, previous[0].id, diff, len(spans))


def apply_plan(
    session_factory: SessionFactory,
    client: RegistryClient,
    plan_id: str,
    *,
    clock: Clock,
    options: ApplyOptions,
    metrics: Metrics | None = None,
    send_summary: SummarySender | None = None,
) -> ApplyResult:
    """Apply the stored plan `plan_id`; actions already journalled as done are skipped."""
    with session_factory() as session, session.begin():
        _, current = load_plan(session, plan_id)
        set_plan_state(session, plan_id, PlanState.APPLYING)
    try:
        result = apply(
            current, client, SqlJournal(session_factory, clock=clock), clock=clock, options=options
        )
    except Exception:
        with session_factory() as session, session.begin():
            set_plan_state(session, plan_id, PlanState.FAILED)
        raise
    failed = bool(result.outcomes(Outcome.FAILED))
    if result.aborted is not None:
        state = PlanState.PLANNED
    else:
        state = PlanState.FAILED if failed else PlanState.APPLIED
    with session_factory() as session, session.begin():
        set_plan_state(session, plan_id, state, at=clock())
    if metrics is not None:
        for entry in result.entries:
            if entry.outcome is not Outcome.RESTORED:
                metrics.cleanup_deletions.labels(result=entry.outcome.value).inc(
                    max(len(entry.tags), 1)
                )
        tripped = result.aborted is not None or any(
            e.reason in BREAKER_REASONS for e in result.outcomes(Outcome.SKIPPED)
        )
        if tripped:
            metrics.cleanup_breaker_trips.inc()
        if state is PlanState.APPLIED:
            metrics.cleanup_bytes_freed.inc(current.bytes_freed)
    log.info(
        "cleanup applied",
        plan_id=plan_id,
        state=state.value,
        deleted=len(result.outcomes(Outcome.DELETED)),
        skipped=len(result.outcomes(Outcome.SKIPPED)),
        failed=len(result.outcomes(Outcome.FAILED)),
        aborted=result.aborted,
        delete_mode=result.delete_mode.value if result.delete_mode is not None else None,
    )
    if send_summary is not None:
        send_summary(apply_summary(current, result, escape=str))
    return result


def restore_plan(
    session_factory: SessionFactory,
    client: RegistryClient,
    plan_id: str,
    *,
    clock: Clock,
    only: Collection[TagRef] | None = None,
) -> list[JournalEntry]:
    """PUT back what `plan_id` deleted (or only the tags in `only`); audited in the journal."""
    with session_factory() as session:
        load_plan(session, plan_id)
    return restore(
        client, SqlJournal(session_factory, clock=clock), plan_id, clock=clock, only=only
    )


def apply_summary(
    plan: Plan,
    result: ApplyResult,
    *,
    limit: int = 20,
    escape: Callable[[str], str] = escape_mrkdwn,
) -> str:
    """Slack mrkdwn text summarising an apply; every repository and tag goes through `escape`.

    Pass `escape=str` when the text is rendered by monitor.alerting.render, which escapes it.
    """
    deleted = sorted(result.deleted_tags())
    skipped = result.outcomes(Outcome.SKIPPED)
    failed = result.outcomes(Outcome.FAILED)
    lines = [
        f"*Cleanup plan {escape(result.plan_id)}*: {len(deleted)} tags deleted, "
        f"{sum(max(len(e.tags), 1) for e in skipped)} skipped, "
        f"{sum(max(len(e.tags), 1) for e in failed)} failed; "
        f"about {plan.bytes_freed} bytes reclaimable by garbage collection."
    ]
    if result.aborted:
        lines.append(f"Stopped by a circuit breaker: {escape(result.aborted)}")
    if result.delete_mode is not None:
        lines.append(f"Deleted by {result.delete_mode.value}: {result.delete_mode_reason}.")
    for ref in deleted[:limit]:
        lines.append(f"• deleted `{escape(str(ref))}`")
    if len(deleted) > limit:
        lines.append(f"• … and {len(deleted) - limit} more")
    for entry in (skipped + failed)[:limit]:
        tags = ",".join(entry.tags) or entry.digest[:19]
        lines.append(
            f"• {entry.outcome.value} `{escape(entry.repository)}:{escape(tags)}`"
            f" ({escape(str(entry.reason))})"
        )
    return "\n".join(lines)
