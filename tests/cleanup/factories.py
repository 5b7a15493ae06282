"""Plain factories for cleanup tests: keyword overrides, fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.cleanup.model import Blob, DeployedSet, ManifestInfo, PullRecord, TagState
from monitor.cleanup.policy import Policy, load_policies
from monitor.events import Client

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FULL_COVERAGE = ((NOW - timedelta(days=400), NOW),)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def digest_of(name: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def make_tag(
    tag: str,
    *,
    repository: str = "team/app",
    digest: str | None = None,
    pushed_days_ago: float = 100,
    first_seen_days_ago: float | None = None,
    pulls: tuple[tuple[str, Client, float], ...] = (),
) -> TagState:
    return TagState(
        repository=repository,
        tag=tag,
        digest=digest or digest_of(f"{repository}:{tag}"),
        first_seen_at=days_ago(
            first_seen_days_ago if first_seen_days_ago is not None else pushed_days_ago
        ),
        last_pushed_at=days_ago(pushed_days_ago),
        media_type="application/vnd.oci.image.manifest.v1+json",
        pulls=tuple(PullRecord(m, c, days_ago(d)) for m, c, d in pulls),
    )


def make_manifest(
    digest: str,
    *,
    repository: str = "team/app",
    blobs: tuple[tuple[str, int], ...] = (),
    children: tuple[str, ...] = (),
    size: int = 500,
    pushed_days_ago: float | None = 100,
) -> ManifestInfo:
    media = (
        "application/vnd.oci.image.index.v1+json"
        if children
        else "application/vnd.oci.image.manifest.v1+json"
    )
    return ManifestInfo(
        repository=repository,
        digest=digest,
        media_type=media,
        size=size,
        blobs=tuple(Blob(d, s) for d, s in blobs),
        children=children,
        pushed_at=None if pushed_days_ago is None else days_ago(pushed_days_ago),
    )


NO_PROTECTION = "{tags: [], grace_hours: 0, min_tags: 0}"


def one_policy(
    body: str, *, protect: str = NO_PROTECTION, deployed: DeployedSet | None = None
) -> tuple[Policy, ...]:
    """One policy `p` over every repository; no pins, grace or floor unless `protect` says."""
    text = f"- name: p\n  repositories: ['**']\n  protect: {protect}\n{body}"
    return load_policies(text, deployed=deployed)
