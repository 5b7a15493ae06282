"""Plain-text and JSON renderings of plans, plan diffs and apply results, for the CLI. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from monitor.cleanup.journal import JournalEntry
from monitor.cleanup.plan import PlanDiff, TagDecision
from monitor.events import format_timestamp
from monitor.tables import table


def decisions_table(decisions: Iterable[TagDecision]) -> str:
    """One row per tag: repository, tag, digest (short; `-` where the plan does not keep it:
    a stored plan names the digests of the tags it deletes only), decision, reason code,
    policy, why."""
    rows = [
        (
            d.repository,
            d.tag,
            d.digest[:19] if d.digest else None,
            d.decision.value,
            d.reason.value,
            d.policy,
            d.text,
        )
        for d in decisions
    ]
    headers = ("repository", "tag", "digest", "decision", "reason", "policy", "why")
    return table(rows, headers)


def diff_lines(diff: PlanDiff, previous_id: str | None) -> list[str]:
    """`+` newly selected for deletion, `-` no longer selected, `~` selected for another reason."""
    if previous_id is None:
        return ["no previous plan to compare with"]
    lines = [f"compared with plan {previous_id}:"]
    lines += [f"+ {ref}" for ref in diff.newly_selected]
    lines += [f"- {ref}" for ref in diff.no_longer_selected]
    lines += [f"~ {ref} {old.value} -> {new.value}" for ref, old, new in diff.changed_reason]
    if len(lines) == 1:
        lines.append("no change in what is deleted")
    return lines


def diff_to_dict(diff: PlanDiff, previous_id: str | None) -> dict[str, Any]:
    return {
        "previous_id": previous_id,
        "newly_selected": [str(r) for r in diff.newly_selected],
        "no_longer_selected": [str(r) for r in diff.no_longer_selected],
        "changed_reason": [
            {"tag": str(r), "from": old.value, "to": new.value}
            for r, old, new in diff.changed_reason
        ],
    }


def entry_to_dict(entry: JournalEntry) -> dict[str, Any]:
    return {
        "repository": entry.repository,
        "digest": entry.digest,
        "tags": list(entry.tags),
        "outcome": entry.outcome.value,
        "reason": str(entry.reason),
        "detail": entry.detail,
        "at": format_timestamp(entry.at),
    }


def entries_table(entries: Sequence[JournalEntry]) -> str:
    rows = [
        (
            e.repository,
            ",".join(e.tags) or None,
            e.digest[:19],
            e.outcome.value,
            str(e.reason),
            e.detail or None,
        )
        for e in entries
    ]
    return table(rows, ("repository", "tags", "digest", "outcome", "reason", "detail"))
