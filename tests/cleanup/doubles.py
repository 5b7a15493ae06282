"""In-memory stand-ins for the apply journal and for a registry (2.8 or 3.x semantics)."""

from __future__ import annotations

import hashlib

from monitor.cleanup.journal import JournalEntry, Outcome, SavedManifest
from monitor.cleanup.registry_client import Manifest, ManifestHead
from monitor.errors import RegistryError


class MemoryJournal:
    """ApplyJournal kept in lists."""

    def __init__(self) -> None:
        self.entries: list[JournalEntry] = []
        self.manifests: list[SavedManifest] = []

    def done(self, plan_id: str) -> set[tuple[str, str]]:
        return {
            (e.repository, e.digest)
            for e in self.entries
            if e.plan_id == plan_id and e.outcome is Outcome.DELETED
        }

    def save_manifest(self, saved: SavedManifest) -> None:
        self.manifests.append(saved)

    def saved(self, plan_id: str) -> list[SavedManifest]:
        return [m for m in self.manifests if m.plan_id == plan_id]

    def record(self, entry: JournalEntry) -> None:
        self.entries.append(entry)


MEDIA = "application/vnd.oci.image.manifest.v1+json"


class MemoryRegistry:
    """RegistryClient over dicts; `tag_delete` switches 3.x behaviour on."""

    def __init__(self, *, tag_delete: bool = False) -> None:
        self.tag_delete = tag_delete
        self.manifests: dict[tuple[str, str], bytes] = {}
        self.tag_map: dict[tuple[str, str], str] = {}
        self.calls: list[tuple[str, str, str]] = []

    def push(self, repository: str, tag: str, content: str) -> str:
        body = content.encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.manifests[(repository, digest)] = body
        self.tag_map[(repository, tag)] = digest
        return digest

    def catalog(self) -> list[str]:
        return sorted({r for r, _ in self.manifests})

    def tags(self, repository: str) -> list[str]:
        return sorted(t for r, t in self.tag_map if r == repository)

    def _resolve(self, repository: str, reference: str) -> str | None:
        if reference.startswith("sha256:"):
            return reference if (repository, reference) in self.manifests else None
        return self.tag_map.get((repository, reference))

    def head_manifest(self, repository: str, reference: str) -> ManifestHead | None:
        self.calls.append(("HEAD", repository, reference))
        digest = self._resolve(repository, reference)
        if digest is None:
            return None
        return ManifestHead(digest, MEDIA, len(self.manifests[(repository, digest)]))

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        digest = self._resolve(repository, reference)
        if digest is None:
            raise RegistryError("manifest unknown", details={"status": 404})
        return Manifest(digest, MEDIA, self.manifests[(repository, digest)])

    def delete_manifest(self, repository: str, digest: str) -> None:
        self.calls.append(("DELETE", repository, digest))
        if (repository, digest) not in self.manifests:
            raise RegistryError("manifest unknown", details={"status": 404})
        del self.manifests[(repository, digest)]
        for key in [k for k, v in self.tag_map.items() if k[0] == repository and v == digest]:
            del self.tag_map[key]

    def delete_tag(self, repository: str, tag: str) -> None:
        self.calls.append(("DELETE", repository, tag))
        if not self.tag_delete:
            raise RegistryError("digest invalid", details={"status": 400})
        if (repository, tag) not in self.tag_map:
            raise RegistryError("manifest unknown", details={"status": 404})
        del self.tag_map[(repository, tag)]

    def supports_tag_delete(self, repository: str) -> bool:
        self.calls.append(("PROBE", repository, ""))
        return self.tag_delete

    def put_manifest(self, repository: str, reference: str, media_type: str, body: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.manifests[(repository, digest)] = body
        if not reference.startswith("sha256:"):
            self.tag_map[(repository, reference)] = digest
        return digest
