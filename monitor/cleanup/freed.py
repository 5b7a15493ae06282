"""What a plan frees: blobs referenced by kept manifests vs. by manifests that go. Pure.

Storage is shared by every repository of the registry, so a blob (or a manifest pushed into
two repositories) counts as freed only when no kept manifest anywhere references it; the sets
span the whole registry, one repository added at a time.
"""

from __future__ import annotations

from monitor.cleanup.model import ManifestInfo


def _key(digest: str) -> int | str:
    """A SHA-256 `digest` as the integer of its first 128 bits (48 bytes in memory instead of
    120: the sets below hold every manifest and blob of the registry), else as given.

    Two different SHA-256 digests share 128 bits with a probability of about n²/2^129 among n
    (below 10^-26 for a million blobs), which would count one freed blob as kept."""
    if len(digest) == 71 and digest.startswith("sha256:"):
        hexadecimal = digest[7:]
        if hexadecimal.islower() or hexadecimal.isdigit():  # one spelling per value
            try:
                return int(hexadecimal[:32], 16)
            except ValueError:
                return digest
    return digest


class Freed:
    """Blobs referenced by kept manifests vs. by manifests that go; counted once, globally.

    Digests are held as `_key`s: a string and an integer never compare equal."""

    def __init__(self) -> None:
        self.kept_blobs: set[int | str] = set()
        self.candidates: dict[int | str, int] = {}

    def add_repository(
        self, manifests: dict[str, ManifestInfo], deleted: set[str], tagged: set[str]
    ) -> None:
        if not manifests:
            return
        has_parent = {c for m in manifests.values() for c in m.children}
        stack = [d for d in manifests if d not in deleted and (d in tagged or d not in has_parent)]
        kept: set[str] = set()
        while stack:
            digest = stack.pop()
            if digest in kept or digest in deleted:
                continue
            kept.add(digest)
            info = manifests.get(digest)
            if info is not None:
                stack.extend(info.children)
        kept_blobs, candidates = self.kept_blobs, self.candidates
        for digest, info in manifests.items():
            if digest in kept:
                kept_blobs.add(_key(digest))
                kept_blobs.update(_key(b.digest) for b in info.blobs)
        for digest, info in manifests.items():
            if digest not in kept:
                key = _key(digest)
                if key not in kept_blobs:
                    candidates[key] = info.size
                for blob in info.blobs:
                    key = _key(blob.digest)
                    if key not in kept_blobs:
                        candidates[key] = blob.size

    def total(self) -> int:
        kept = self.kept_blobs
        return sum(size for digest, size in self.candidates.items() if digest not in kept)
