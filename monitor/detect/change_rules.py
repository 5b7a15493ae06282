"""Rules over writes: out of role, outside business hours, a protected tag moved, a delete
not made by cleanup."""

from __future__ import annotations

import functools
from datetime import datetime
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

from monitor.detect.findings import Hit
from monitor.detect.rulebase import WRITE_ACTIONS, RuleContext, group_of
from monitor.detect.state import DetectorState
from monitor.events import Action, Client, Event, Source, TargetKind


def _write(event: Event) -> bool:
    return event.source is Source.NOTIFICATION and event.action in WRITE_ACTIONS


def _single(event: Event, at: datetime, ctx: RuleContext, summary: str) -> list[Hit]:
    group = group_of(event, ctx.config.group_by, required=False) or ()
    return [Hit(group, summary, (event.event_id,), first_seen_at=at, last_seen_at=at)]


def out_of_role(event: Event, state: DetectorState, at: datetime, ctx: RuleContext) -> list[Hit]:
    """A push, mount or delete that the account's role does not allow on that repository.

    Runs only when a roles file is configured; an account missing from it has no role.
    """
    if not ctx.roles.configured or not _write(event):
        return []
    if ctx.roles.permits(event.actor, event.action, event.repository):
        return []
    grant = ctx.roles.accounts.get(event.actor) if event.actor else None
    role = grant.role.value if grant is not None else "no role"
    who = event.actor or "an anonymous client"
    summary = (
        f"{who} ({role}) made a {event.action.value} on {event.repository or 'a repository'}, "
        "which its role does not allow"
    )
    return _single(event, at, ctx, summary)


def off_hours_write(
    event: Event, state: DetectorState, at: datetime, ctx: RuleContext
) -> list[Hit]:
    """A push, mount or delete outside the configured business hours."""
    if not _write(event) or ctx.hours.contains(at):
        return []
    local = at.astimezone(ZoneInfo(ctx.hours.timezone))
    summary = (
        f"{event.action.value} on {event.repository or 'a repository'} by "
        f"{event.actor or 'an anonymous client'} at {local:%a %H:%M} {ctx.hours.timezone}, "
        "outside business hours"
    )
    return _single(event, at, ctx, summary)


def _protected(ctx: RuleContext, tag: str) -> bool:
    return _matches_any(tag, tuple(ctx.config.option("patterns")))


@functools.lru_cache(maxsize=65_536)
def _matches_any(tag: str, patterns: tuple[str, ...]) -> bool:
    """Whether `tag` matches one of the glob `patterns` (cached: the same tags recur)."""
    return any(fnmatchcase(tag, pattern) for pattern in patterns)


def tag_moved(event: Event, state: DetectorState, at: datetime, ctx: RuleContext) -> list[Hit]:
    """A push that points a protected tag (option `patterns`) at a different digest.

    The rule remembers repository:tag → digest for protected tags, from manifest pushes and
    pulls by tag, and forgets a tag when it is deleted.
    """
    if event.source is not Source.NOTIFICATION or not event.repository:
        return []
    if event.action is Action.DELETE:
        _forget(state, event)
        return []
    if (
        event.action not in (Action.PUSH, Action.PULL)
        or event.target_kind is not TargetKind.MANIFEST
        or not event.tag
        or not event.digest
        or not _protected(ctx, event.tag)
    ):
        return []
    tags = state.tags.setdefault(event.repository, {})
    previous = tags.get(event.tag)
    tags[event.tag] = event.digest
    if event.action is not Action.PUSH or previous is None or previous == event.digest:
        return []
    summary = (
        f"protected tag {event.repository}:{event.tag} moved from {previous} to {event.digest} "
        f"by {event.actor or 'an anonymous client'}"
    )
    return _single(event, at, ctx, summary)


def _forget(state: DetectorState, event: Event) -> None:
    """A tag deleted, or a manifest deleted by digest (with the tags of its repository that
    point at it)."""
    tags = state.tags.get(event.repository or "")
    if tags is None:
        return
    if event.tag:
        tags.pop(event.tag, None)
    elif event.digest and event.digest in tags.values():
        for tag in [t for t, digest in tags.items() if digest == event.digest]:
            del tags[tag]
    if not tags:
        del state.tags[event.repository or ""]


def delete_outside_cleanup(
    event: Event, state: DetectorState, at: datetime, ctx: RuleContext
) -> list[Hit]:
    """A delete not made by cleanup (its User-Agent `registry-monitor/…`, i.e. client
    `monitor`, or one of the `cleanup_accounts`)."""
    if event.source is not Source.NOTIFICATION or event.action is not Action.DELETE:
        return []
    if event.client is Client.MONITOR or event.actor in ctx.config.option("cleanup_accounts"):
        return []
    target = (event.tag and f"tag {event.tag}") or event.digest or "an object"
    summary = (
        f"{event.actor or 'an anonymous client'} deleted {target} in "
        f"{event.repository or 'a repository'} outside cleanup"
    )
    return _single(event, at, ctx, summary)
