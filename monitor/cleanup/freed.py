"""What a plan frees: blobs referenced by kept manifests vs. by manifests that go. Pure.

Storage is shared by every repository of the registry, so a blob (or a manifest pushed into
two repositories) counts as freed only when no kept manifest anywhere references it; the sets
span the whole registry, one repository added at a time.
"""

from __future__ import annotations

from array import array
from typing import NamedTuple

from monitor.cleanup.model import ManifestInfo

_MASK = (1 << 64) - 1
"""A digest's key is `hash(digest) & _MASK`: its string hash (computed in C, and cached on the
string, which is often a dict key already), made unsigned. The hash is the interpreter's
(SipHash, seeded per process), so keys compare only within one plan, which is all `Freed`
needs. Every digest is a key, whatever its algorithm or spelling: two spellings stay two
digests. Two different digests share a key with a probability of about n²/2^65 among n:
8·10^-8 for the 1.7M digests of a plan of the 10M-event store, which would count one freed
blob as kept (an estimate off by one blob, once in twelve million plans)."""


BUCKETS = 256
"""Keys are kept in this many arrays, by their top 8 bits: `total` then counts one bucket at
a time, holding a 256th of the keys as Python objects at once."""
_BUCKET_SHIFT = 56


class FreedKeys(NamedTuple):
    """`Freed`'s arrays as bytes, bucket by bucket."""

    kept: list[bytes]
    candidates: list[bytes]
    sizes: list[bytes]


class Freed:
    """Blobs referenced by kept manifests vs. by manifests that go; counted once, globally.

    Digests are held as keys (`_MASK`). The keys of a registry are the bulk (1.26M kept on a
    store of 100k tags; 1.1M candidates for a plan that deletes 517,836 untagged manifests):
    each key is appended to the array of its bucket, 8 bytes instead of about 80 in a set, and
    a candidate's size to an array beside it (16 bytes in all instead of about 115 in a dict of
    128-bit keys: 126 MB for those 1.1M candidates). A candidate is a key of what goes that its
    own repository does not keep; it may be appended more than once, the last size counting.
    `total` drops the candidates some other repository keeps."""

    def __init__(self) -> None:
        self.kept = [array("Q") for _ in range(BUCKETS)]
        """Kept keys by bucket."""
        self.candidates = [array("Q") for _ in range(BUCKETS)]
        """Candidate keys by bucket."""
        self.sizes = [array("q") for _ in range(BUCKETS)]
        """The size of each candidate key, in the same order."""

    def add_repository(
        self, manifests: dict[str, ManifestInfo], deleted: set[str], tagged: set[str]
    ) -> None:
        if not manifests:
            return
        has_parent = {c for m in manifests.values() if m.children for c in m.children}
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
        # Digests first, each once per repository (sets and dicts filled in C), then keys.
        kept_digests: set[str] = set()
        for digest in kept:
            info = manifests.get(digest)
            if info is not None:
                kept_digests.add(digest)
                kept_digests.update([blob[0] for blob in info.blobs])
        gone: dict[str, int] = {}  # the last size of each digest, as the arrays count them
        for digest, info in manifests.items():
            if digest not in kept:
                gone[digest] = info.size
                gone.update(info.blobs)
        mask = _MASK
        kept_here = {hash(digest) & mask for digest in kept_digests}
        candidates, sizes, shift = self.candidates, self.sizes, _BUCKET_SHIFT
        for digest, size in gone.items():
            key = hash(digest) & mask
            if key not in kept_here:
                candidates[key >> shift].append(key)
                sizes[key >> shift].append(size)
        kept_keys = self.kept
        for key in kept_here:
            kept_keys[key >> shift].append(key)

    def export(self) -> FreedKeys:
        """The keys so far, as bytes: what a process that planned other repositories hands
        back to be `absorb`ed (keys compare only between processes forked from one, which
        share the interpreter's hash seed)."""
        return FreedKeys(
            [a.tobytes() for a in self.kept],
            [a.tobytes() for a in self.candidates],
            [a.tobytes() for a in self.sizes],
        )

    def absorb(self, other: FreedKeys) -> None:
        """Adds the keys `other` exported, as if its repositories came after these."""
        for mine, theirs in (
            (self.kept, other.kept),
            (self.candidates, other.candidates),
            (self.sizes, other.sizes),
        ):
            if len(theirs) != BUCKETS:
                raise ValueError("freed keys of another shape")
            for bucket, data in zip(mine, theirs, strict=True):
                bucket.frombytes(data)

    def total(self) -> int:
        total = 0
        for kept_keys, keys, sizes in zip(self.kept, self.candidates, self.sizes, strict=True):
            kept = set(kept_keys)
            last = dict(zip(keys, sizes, strict=True))
            total += sum(size for key, size in last.items() if key not in kept)
        return total
