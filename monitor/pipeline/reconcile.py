"""Reconcile the registry's log with its notifications: rebuild the events that never arrived.

Requests read from the log wait `reconcile.settle_seconds` (the registry may still be retrying
them); then every one whose notifications are still missing gets them rebuilt from its log line,
stored through the writer like any event (source `log`, `reconstructed`), and a Slack message
says how many were lost (through the alert outbox, never lost itself).

The log names no digest for a manifest pushed by tag. When the registry's URL is configured,
a rebuilt push by tag that is still the newest logged push or delete of its tag takes the
digest the registry answers for the tag (`HEAD /v2/<repository>/manifests/<tag>`), asked
outside any store transaction; a failure leaves the digest empty.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy.orm import Session

from monitor.alerting.outbox import Kind
from monitor.alerts import Alert, Evidence, Severity
from monitor.cleanup.registry_client import RegistryClient
from monitor.clock import Clock
from monitor.errors import RegistryError
from monitor.events import Action, Event, format_timestamp
from monitor.ingest.requestlog import pushes_to_resolve
from monitor.observability.metrics import Metrics
from monitor.pipeline.cleanup import open_registry
from monitor.pipeline.scheduler import Job
from monitor.settings import CleanupSettings
from monitor.store.engine import SessionFactory
from monitor.store.outbox import enqueue
from monitor.store.requestlog import newest_tag_writes, plan_reconcile, settle
from monitor.store.writer import StoreWriter

RULE = "notifications_lost"
log = structlog.get_logger("monitor.pipeline.reconcile")

TagDigest = Callable[[str, str], str | None]
"""(repository, tag) → the digest the registry has the tag on; None when it has no such tag;
`RegistryError` when it cannot tell."""
OpenTagDigest = Callable[[], AbstractContextManager[TagDigest]]


LOOKUP_TIMEOUT_SECONDS = 5.0
LOOKUP_FAILURES = (RegistryError, OSError, ValueError, httpx.HTTPError)
"""What asking the registry can raise (a refused token, a bad CA file, a garbled answer)."""


def tag_digest_of(client: RegistryClient) -> TagDigest:
    """A TagDigest asking `client` with `HEAD /v2/<repository>/manifests/<tag>` (every
    manifest type accepted), reading `Docker-Content-Digest`."""

    def lookup(repository: str, tag: str) -> str | None:
        head = client.head_manifest(repository, tag)
        return (head.digest or None) if head is not None else None

    return lookup


def registry_tag_digest(settings: CleanupSettings) -> OpenTagDigest | None:
    """What asks the registry at `cleanup.registry_url` (its auth and TLS settings) for a tag's
    digest, with a short timeout and no retries; None when no URL is configured."""
    if settings.registry_url is None:
        return None

    @contextlib.contextmanager
    def open_lookup() -> Iterator[TagDigest]:
        with open_registry(settings, timeout_seconds=LOOKUP_TIMEOUT_SECONDS, retries=0) as client:
            yield tag_digest_of(client)

    return open_lookup


@dataclasses.dataclass
class ReconcileOutcome:
    """What a pass examined, found delivered, and rebuilt (or would rebuild, in a dry run)."""

    examined: int = 0
    matched: int = 0
    requests_reconstructed: int = 0
    events: list[Event] = dataclasses.field(default_factory=list)
    stored: int = 0
    digests_resolved: int = 0
    digests_unresolved: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "examined": self.examined,
            "matched": self.matched,
            "requests_reconstructed": self.requests_reconstructed,
            "events": len(self.events),
            "stored": self.stored,
            "digests_resolved": self.digests_resolved,
            "digests_unresolved": self.digests_unresolved,
        }


def resolve_push_digests(
    session_factory: SessionFactory,
    events: list[Event],
    open_lookup: OpenTagDigest,
    outcome: ReconcileOutcome,
    metrics: Metrics | None = None,
) -> list[Event]:
    """`events` with the digest of each push by tag the registry can still tell filled in
    (the store is read first, in its own session; the registry is asked after it closed).
    The first failure ends the asking for this batch and is logged once."""
    keys = {
        (e.repository, e.tag)
        for e in events
        if e.action is Action.PUSH and e.repository and e.tag and e.digest is None
    }
    if not keys:
        return events
    with session_factory() as session:
        newest = newest_tag_writes(session, keys)
    wanted = pushes_to_resolve(events, newest)
    if not wanted:
        return events
    digests: dict[str, str] = {}
    failed: Exception | None = None
    try:
        with open_lookup() as lookup:
            for event in wanted:
                assert event.repository is not None and event.tag is not None
                digest = lookup(event.repository, event.tag)
                if digest is not None:
                    digests[event.event_id] = digest
    except LOOKUP_FAILURES as exc:
        failed = exc
    outcome.digests_resolved += len(digests)
    outcome.digests_unresolved += len(wanted) - len(digests)
    if metrics is not None:
        lookups = metrics.reconcile_digest_lookups
        lookups.labels(outcome="resolved").inc(len(digests))
        lookups.labels(outcome="unresolved").inc(len(wanted) - len(digests))
    if failed is not None:
        log.warning(
            "could not ask the registry for the digests of rebuilt pushes",
            error=f"{type(failed).__name__}: {failed}",
            unresolved=len(wanted) - len(digests),
        )
    return [
        dataclasses.replace(e, digest=digests[e.event_id]) if e.event_id in digests else e
        for e in events
    ]


def lost_alert(events: list[Event], *, now: datetime) -> Alert:
    """The Slack message for notifications the registry lost and the log filled in."""
    by_action = Counter(e.action.value for e in events)
    first = min(e.occurred_at for e in events)
    last = max(e.occurred_at for e in events)
    parts = ", ".join(f"{count} {action}" for action, count in sorted(by_action.items()))
    return Alert(
        rule=RULE,
        severity=Severity.WARNING,
        fingerprint=f"{RULE}:{now.isoformat()}",
        subject={"events": str(len(events))},
        summary=(
            f"The registry lost {len(events)} notifications ({parts}) between "
            f"{format_timestamp(first)} and {format_timestamp(last)}; they were rebuilt from its "
            "log"
        ),
        evidence=Evidence(),
        first_seen_at=now,
        last_seen_at=now,
    )


def reconcile_events(
    session_factory: SessionFactory,
    writer: StoreWriter,
    *,
    now: datetime,
    settle_seconds: float,
    since: datetime | None = None,
    until: datetime | None = None,
    dry_run: bool = False,
    pending_only: bool = True,
    metrics: Metrics | None = None,
    notify: bool = True,
    open_lookup: OpenTagDigest | None = None,
) -> ReconcileOutcome:
    """One pass over the requests settled by `now` (in [since, until) when given), in batches.

    `pending_only=False` also re-examines settled requests (a backfill over stored log data);
    a dry run plans without writing anything. `open_lookup` gives what tells the digest of a
    tag at the registry (none: rebuilt pushes by tag keep an empty digest).
    """
    settled_before = now - timedelta(seconds=settle_seconds)
    outcome = ReconcileOutcome()
    after = None
    while True:
        with session_factory() as session:
            plan = plan_reconcile(
                session,
                settled_before=settled_before,
                since=since,
                until=until,
                pending_only=pending_only,
                after=after,
            )
        if plan.examined == 0:
            break
        after = plan.last
        outcome.examined += plan.examined
        outcome.matched += plan.matched
        outcome.requests_reconstructed += plan.examined - plan.matched
        events = plan.events
        if open_lookup is not None:
            events = resolve_push_digests(
                session_factory, events, open_lookup, outcome, metrics=metrics
            )
        outcome.events.extend(events)
        if dry_run:
            continue

        def save(session: Session, states: dict[str, tuple[str, int]] = plan.states) -> None:
            settle(session, states, now=now)

        result = writer.submit(events, (), also=save).result()
        outcome.stored += len(result.inserted)
        if metrics is not None and result.inserted:
            metrics.events_reconstructed.inc(len(result.inserted))
    outcome.requests_reconstructed = len({e.request_id for e in outcome.events})
    if outcome.stored and notify and not dry_run:
        stored = outcome.events
        writer.transact(lambda s: enqueue(s, Kind.NEW, lost_alert(stored, now=now), now=now))
    if outcome.examined:
        log.info("reconciled registry log with notifications", **outcome.to_dict())
    return outcome


JOB = "reconcile-events"


def reconcile_job(
    session_factory: SessionFactory,
    writer: StoreWriter,
    *,
    clock: Clock,
    settle_seconds: float,
    interval_seconds: float,
    metrics: Metrics | None = None,
    open_lookup: OpenTagDigest | None = None,
) -> Job:
    """`reconcile_events` over the pending requests every `interval_seconds` (the first one
    interval after start), on one replica at a time: the lease is held for most of the
    interval and left to lapse."""

    def run() -> None:
        reconcile_events(
            session_factory,
            writer,
            now=clock(),
            settle_seconds=settle_seconds,
            metrics=metrics,
            open_lookup=open_lookup,
        )

    return Job(
        JOB,
        run,
        interval=interval_seconds,
        lease=timedelta(seconds=max(interval_seconds * 0.9, 1.0)),
        errors="reconcile",
        first_after_interval=True,
    )
