"""Tag and manifest state built from the real notifications captured from distribution 2.8."""

from __future__ import annotations

from monitor.cleanup.model import Blob, ManifestInfo, PullRecord, TagState
from monitor.events import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, classify_client, parse_timestamp
from tests.fixture_events import raw_events


def fixture_state() -> tuple[list[TagState], list[ManifestInfo]]:
    """Live tags (with their pulls) and manifests as a store would hold them after scenario 1."""
    tags: dict[tuple[str, str], TagState] = {}
    manifests: dict[tuple[str, str], ManifestInfo] = {}
    for _, event in raw_events():
        target = event["target"]
        assert isinstance(target, dict)
        media = target.get("mediaType")
        if media not in MANIFEST_MEDIA_TYPES:
            continue
        repo, digest, tag = target["repository"], target["digest"], target.get("tag")
        at = parse_timestamp(str(event["timestamp"]))
        request = event["request"]
        assert isinstance(request, dict)
        if event["action"] == "push":
            refs = target.get("references", [])
            is_index = media in INDEX_MEDIA_TYPES
            manifests[(repo, digest)] = ManifestInfo(
                repository=repo,
                digest=digest,
                media_type=media,
                size=target["size"],
                blobs=() if is_index else tuple(Blob(r["digest"], r["size"]) for r in refs),
                children=tuple(r["digest"] for r in refs) if is_index else (),
                pushed_at=at,
            )
            if tag:
                old = tags.get((repo, tag))
                tags[(repo, tag)] = TagState(
                    repository=repo,
                    tag=tag,
                    digest=digest,
                    media_type=media,
                    first_seen_at=old.first_seen_at if old else at,
                    last_pushed_at=at,
                )
        elif event["action"] == "pull" and tag and (repo, tag) in tags:
            old = tags[(repo, tag)]
            record = PullRecord(request["method"], classify_client(request.get("useragent")), at)
            kept = tuple(
                p
                for p in old.pulls
                if (p.http_method, p.client) != (record.http_method, record.client)
            )
            tags[(repo, tag)] = TagState(
                old.repository,
                old.tag,
                old.digest,
                old.first_seen_at,
                old.last_pushed_at,
                old.media_type,
                None,
                (*kept, record),
            )
    return list(tags.values()), list(manifests.values())
