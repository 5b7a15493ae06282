"""What a plan frees: blobs referenced by kept manifests vs. by manifests that go. Pure.

Storage is shared by every repository of the registry, so a blob (or a manifest pushed into
two repositories) counts as freed only when no kept manifest anywhere references it; the sets
span the whole registry, one repository added at a time.
"""

from __future__ import annotations

from array import array

from monitor.cleanup.model import ManifestInfo


def _key(digest: str) -> int | str:
    """A SHA-256 `digest` as the integer of its first 128 bits (48 bytes in memory instead of
    120: the sets below hold every manifest and blob of the registry), else as given.

    Only the lowercase spelling becomes an integer, so two spellings stay two digests
    (`digest.islower()` holds when no letter after the lowercase "sha256:" is upper case: one
    scan, where slicing the hexadecimal out to check it cost as much as the rest together).
    Two different SHA-256 digests share 128 bits with a probability of about n²/2^129 among n
    (below 10^-26 for a million blobs), which would count one freed blob as kept."""
    if len(digest) == 71 and digest.startswith("sha256:") and digest.islower():
        try:
            return int(digest[7:39], 16)
        except ValueError:
            return digest
    return digest


_HALF = (1 << 64) - 1


class Freed:
    """Blobs referenced by kept manifests vs. by manifests that go; counted once, globally.

    Digests are held as `_key`s: a string and an integer never compare equal. The kept keys
    of a registry (1.26M on a store of 100k tags) are the bulk: each repository's are
    appended once to an array of 64-bit halves (16 bytes a key instead of about 90 in a set);
    the candidates (keys of what goes, not kept in their own repository) stay a dict, and
    `total` drops those some other repository keeps."""

    def __init__(self) -> None:
        self.kept = array("Q")
        """Kept SHA-256 keys, each as its high then its low 64 bits."""
        self.kept_other: set[int | str] = set()
        """Kept digests that are not SHA-256 (as given)."""
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
        kept_here: set[int | str] = set()
        for digest, info in manifests.items():
            if digest in kept:
                kept_here.add(_key(digest))
                kept_here.update(_key(b.digest) for b in info.blobs)
        candidates = self.candidates
        for digest, info in manifests.items():
            if digest not in kept:
                key = _key(digest)
                if key not in kept_here:
                    candidates[key] = info.size
                for blob in info.blobs:
                    key = _key(blob.digest)
                    if key not in kept_here:
                        candidates[key] = blob.size
        halves = self.kept
        for key in kept_here:
            if isinstance(key, int):
                halves.append(key >> 64)
                halves.append(key & _HALF)
            else:
                self.kept_other.add(key)

    def total(self) -> int:
        candidates = self.candidates
        kept = {key for key in self.kept_other if key in candidates}
        halves = iter(self.kept)
        for high, low in zip(halves, halves, strict=True):
            key = high << 64 | low
            if key in candidates:
                kept.add(key)
        return sum(size for digest, size in candidates.items() if digest not in kept)
