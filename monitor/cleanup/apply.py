"""Execute a cleanup Plan against the registry, and restore what a plan deleted.

Per digest, right before deleting: every planned tag is HEADed again and skipped (reported)
if it moved or vanished; on 2.8 (delete by digest) the digest is deleted only when every
tag currently on it is in the plan; on 3.x the planned tags are deleted one by one. Each
manifest (and an index's children) is saved through the journal before it is deleted, so
`restore` can PUT it back. A circuit breaker bounds deletions per run and the share of a
repository's tags; actions the journal already records as done are skipped, so a run resumes.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum

from monitor.cleanup.journal import (
    ApplyJournal,
    JournalEntry,
    Outcome,
    SavedManifest,
    SkipReason,
)
from monitor.cleanup.model import TagRef
from monitor.cleanup.plan import DigestAction, Plan
from monitor.cleanup.registry_client import RegistryClient
from monitor.clock import Clock
from monitor.errors import MonitorError, RegistryError
from monitor.events import INDEX_MEDIA_TYPES
from monitor.settings import CleanupSettings


class DeleteMode(StrEnum):
    AUTO = "auto"
    TAG = "tag"
    """One DELETE per planned tag (distribution 3.x)."""
    DIGEST = "digest"
    """DELETE by digest once every tag on it is planned (2.8, which cannot delete a tag)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ApplyOptions:
    delete_mode: DeleteMode = DeleteMode.AUTO
    """How deletes are sent; AUTO asks the registry (`RegistryClient.supports_tag_delete`)."""
    max_deletions: int = 100
    """Most tags (untagged manifests count one each) a run may delete; above it nothing runs."""
    max_repository_share: float = 0.5
    """Most share of a repository's planned tags a run may delete; above it the repo is skipped."""
    concurrency: int = 2
    """Repositories worked on at once; within one repository deletions are sequential."""
    min_interval_seconds: float = 0.2
    """Least time between two DELETE requests across the run."""


def apply_options(settings: CleanupSettings) -> ApplyOptions:
    """ApplyOptions from the `cleanup` settings section."""
    return ApplyOptions(
        delete_mode=DeleteMode(settings.delete_mode),
        max_deletions=settings.max_deletions,
        max_repository_share=settings.max_repository_share,
        concurrency=settings.concurrency,
        min_interval_seconds=settings.min_interval_seconds,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ApplyResult:
    plan_id: str
    entries: tuple[JournalEntry, ...]
    aborted: str | None = None
    delete_mode: DeleteMode | None = None
    """The mode the deletes used (never AUTO); None when nothing was sent."""
    delete_mode_reason: str = ""
    """Why that mode: configured, or what the registry answered to the probe."""

    def outcomes(self, outcome: Outcome) -> list[JournalEntry]:
        return [e for e in self.entries if e.outcome is outcome]

    def deleted_tags(self) -> set[TagRef]:
        return {TagRef(e.repository, t) for e in self.outcomes(Outcome.DELETED) for t in e.tags}


class _Throttle:
    def __init__(self, interval: float, sleep: Callable[[float], None]) -> None:
        self.interval = interval
        self.sleep = sleep
        self.lock = threading.Lock()
        self.next_at = 0.0

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            if self.next_at > now:
                self.sleep(self.next_at - now)
            self.next_at = max(now, self.next_at) + self.interval


class _Run:
    def __init__(
        self,
        plan_id: str,
        client: RegistryClient,
        journal: ApplyJournal,
        options: ApplyOptions,
        clock: Clock,
        sleep: Callable[[float], None],
    ) -> None:
        self.plan_id = plan_id
        self.client = client
        self.journal = journal
        self.options = options
        self.clock = clock
        self.throttle = _Throttle(options.min_interval_seconds, sleep)
        self.lock = threading.Lock()
        self.entries: list[JournalEntry] = []
        self.budget = options.max_deletions
        self.tag_delete = options.delete_mode is DeleteMode.TAG

    def note(
        self,
        action: DigestAction,
        tags: Sequence[str],
        outcome: Outcome,
        reason: str,
        detail: str = "",
    ) -> None:
        entry = JournalEntry(
            self.plan_id,
            action.repository,
            action.digest,
            tuple(tags),
            outcome,
            reason,
            self.clock(),
            detail,
        )
        with self.lock:
            self.journal.record(entry)
            self.entries.append(entry)

    def take_budget(self, count: int) -> bool:
        with self.lock:
            if count > self.budget:
                return False
            self.budget -= count
            return True

    def live_digests(self, repository: str, tags: Collection[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for tag in tags:
            head = self.client.head_manifest(repository, tag)
            if head is not None:
                out[tag] = head.digest
        return out

    def repository(self, repository: str, actions: list[DigestAction]) -> None:
        known: dict[str, str] = {}
        if not self.tag_delete:
            known = self.live_digests(repository, self.client.tags(repository))
        for action in actions:
            try:
                self.action(action, known)
            except MonitorError as exc:
                self.note(action, action.tags, Outcome.FAILED, "error", exc.message)

    def action(self, action: DigestAction, known: dict[str, str]) -> None:
        repo, digest = action.repository, action.digest
        now_on = self.live_digests(repo, action.tags)
        tags: list[str] = []
        for tag in action.tags:
            if tag not in now_on:
                self.note(action, [tag], Outcome.SKIPPED, SkipReason.TAG_GONE)
            elif now_on[tag] != digest:
                self.note(action, [tag], Outcome.SKIPPED, SkipReason.TAG_MOVED, now_on[tag])
            else:
                tags.append(tag)
        if action.tags and not tags:
            return
        if not self.tag_delete:
            current = self.client.tags(repo)
            fresh = [t for t in current if t not in known and t not in now_on]
            known.update(self.live_digests(repo, fresh))
            known.update(now_on)
            on_digest = {t for t in current if known.get(t) == digest}
            extra = sorted(on_digest - set(tags))
            if extra:
                self.note(
                    action,
                    tags,
                    Outcome.SKIPPED,
                    SkipReason.UNPLANNED_TAG_ON_DIGEST,
                    ",".join(extra),
                )
                return
        if not self.take_budget(max(len(tags), 1)):
            self.note(action, tags, Outcome.SKIPPED, SkipReason.RUN_LIMIT_REACHED)
            return
        if not self.save(action, tags):
            self.note(action, tags, Outcome.SKIPPED, SkipReason.MANIFEST_GONE)
            return
        if self.tag_delete and tags:
            for tag in tags:
                self.throttle.wait()
                self.client.delete_tag(repo, tag)
        else:
            self.throttle.wait()
            try:
                self.client.delete_manifest(repo, digest)
            except RegistryError as exc:
                # A timeout may hide a delete that happened: look before calling it failed.
                if self.client.head_manifest(repo, digest) is not None:
                    raise
                detail = f"confirmed gone after: {exc.message}"
                self.note(action, tags, Outcome.DELETED, action.reason.value, detail)
                return
        self.note(action, tags, Outcome.DELETED, action.reason.value)

    def save(self, action: DigestAction, tags: list[str]) -> bool:
        repo = action.repository
        if self.client.head_manifest(repo, action.digest) is None:
            return False
        manifest = self.client.get_manifest(repo, action.digest)
        media_type = manifest.media_type or action.media_type or ""
        children: list[SavedManifest] = []
        if media_type in INDEX_MEDIA_TYPES:
            for child in json.loads(manifest.body).get("manifests", []):
                got = self.client.get_manifest(repo, child["digest"])
                children.append(
                    SavedManifest(
                        self.plan_id,
                        repo,
                        child["digest"],
                        got.media_type,
                        got.body,
                        (),
                        action.digest,
                    )
                )
        for saved in children:
            self.journal.save_manifest(saved)
        self.journal.save_manifest(
            SavedManifest(self.plan_id, repo, action.digest, media_type, manifest.body, tuple(tags))
        )
        return True


def apply(
    plan: Plan,
    client: RegistryClient,
    journal: ApplyJournal,
    *,
    clock: Clock,
    options: ApplyOptions | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ApplyResult:
    """Carry out `plan`'s digest actions; every outcome goes to the journal and the result."""
    options = options or ApplyOptions()
    plan_id = plan.plan_id
    run = _Run(plan_id, client, journal, options, clock, sleep)
    done = journal.done(plan_id)
    pending = [a for a in plan.actions if (a.repository, a.digest) not in done]
    total = sum(max(len(a.tags), 1) for a in pending)
    if total > options.max_deletions:
        return ApplyResult(
            plan_id, (), f"plan deletes {total} > max_deletions {options.max_deletions}"
        )
    planned = Counter(d.repository for d in plan.decisions)
    by_repo: dict[str, list[DigestAction]] = defaultdict(list)
    for action in pending:
        by_repo[action.repository].append(action)
    allowed: dict[str, list[DigestAction]] = {}
    for repo, actions in sorted(by_repo.items()):
        removing = sum(len(a.tags) for a in actions)
        share = removing / planned[repo] if planned[repo] else 0.0
        if share > options.max_repository_share:
            for action in actions:
                run.note(
                    action,
                    action.tags,
                    Outcome.SKIPPED,
                    SkipReason.REPOSITORY_SHARE_EXCEEDED,
                    f"{share:.0%} > {options.max_repository_share:.0%}",
                )
        else:
            allowed[repo] = actions
    if not allowed:
        return ApplyResult(plan_id, tuple(run.entries))
    mode, reason = resolve_delete_mode(client, options.delete_mode, next(iter(allowed)))
    run.tag_delete = mode is DeleteMode.TAG
    with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
        futures = [pool.submit(run.repository, r, a) for r, a in allowed.items()]
        for future in futures:
            future.result()
    return ApplyResult(plan_id, tuple(run.entries), delete_mode=mode, delete_mode_reason=reason)


def resolve_delete_mode(
    client: RegistryClient, configured: DeleteMode, repository: str
) -> tuple[DeleteMode, str]:
    """The mode deletes use, and why: as configured, or (AUTO) what the registry supports,
    asked in `repository` (a DELETE of a tag that does not exist; nothing changes)."""
    if configured is not DeleteMode.AUTO:
        return configured, f"cleanup.delete_mode is {configured.value}"
    if client.supports_tag_delete(repository):
        return DeleteMode.TAG, "the registry deletes single tags (distribution 3.x)"
    return DeleteMode.DIGEST, "the registry deletes by digest only (distribution 2.x)"


def restore(
    client: RegistryClient,
    journal: ApplyJournal,
    plan_id: str,
    *,
    clock: Clock,
    only: Collection[TagRef] | None = None,
) -> list[JournalEntry]:
    """PUT back what `plan_id` deleted: index children first, then each manifest under its tags.

    Works while the blobs are still in the registry's storage (until garbage collection).
    `only` restricts the restore to some tags.
    """
    saved = journal.saved(plan_id)
    entries: list[JournalEntry] = []

    def put(item: SavedManifest, reference: str, tags: tuple[str, ...]) -> None:
        try:
            digest = client.put_manifest(item.repository, reference, item.media_type, item.body)
            if digest and digest != item.digest:
                raise RegistryError(f"restored {reference} as {digest}, expected {item.digest}")
            outcome, detail = Outcome.RESTORED, ""
        except MonitorError as exc:
            outcome, detail = Outcome.FAILED, exc.message
        entry = JournalEntry(
            plan_id, item.repository, item.digest, tags, outcome, "restore", clock(), detail
        )
        journal.record(entry)
        entries.append(entry)

    wanted = None if only is None else set(only)
    tops = [s for s in saved if s.parent is None]
    chosen = [
        s for s in tops if wanted is None or any(TagRef(s.repository, t) in wanted for t in s.tags)
    ]
    parents = {(s.repository, s.digest) for s in chosen}
    for child in saved:
        if child.parent is not None and (child.repository, child.parent) in parents:
            put(child, child.digest, ())
    for item in chosen:
        tags = [t for t in item.tags if wanted is None or TagRef(item.repository, t) in wanted]
        if not item.tags:
            put(item, item.digest, ())
        for tag in tags:
            put(item, tag, (tag,))
    return entries
