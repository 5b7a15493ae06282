"""Bytes a plan frees: the compact digest keys count exactly what plain strings count."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.cleanup.freed import Freed
from monitor.cleanup.model import Blob, ManifestInfo

# SHA-256 digests, one in upper case (another spelling, a different digest to the registry),
# one not hexadecimal, one of another algorithm: all must stay distinct.
DIGESTS = [
    "sha256:" + "a" * 64,
    "sha256:" + "A" * 64,
    "sha256:" + "1" * 64,
    "sha256:" + "0" * 63 + "f",
    "sha256:" + "z" * 64,
    "sha512:" + "a" * 128,
]
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def reference_total(repositories: list[tuple[dict[str, ManifestInfo], set[str], set[str]]]) -> int:
    """The count as first written: every digest as its string."""
    kept_blobs: set[str] = set()
    candidates: dict[str, int] = {}
    for manifests, deleted, tagged in repositories:
        if not manifests:
            continue
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
        for digest, info in manifests.items():
            if digest in kept:
                kept_blobs.add(digest)
                kept_blobs.update(b.digest for b in info.blobs)
        for digest, info in manifests.items():
            if digest not in kept:
                if digest not in kept_blobs:
                    candidates[digest] = info.size
                for blob in info.blobs:
                    if blob.digest not in kept_blobs:
                        candidates[blob.digest] = blob.size
    return sum(size for digest, size in candidates.items() if digest not in kept_blobs)


manifest = st.tuples(
    st.sampled_from(DIGESTS),
    st.lists(st.tuples(st.sampled_from(DIGESTS), st.integers(0, 1000)), max_size=3),
    st.lists(st.sampled_from(DIGESTS), max_size=2),
    st.integers(0, 100),
)
repository = st.tuples(
    st.lists(manifest, max_size=5),
    st.sets(st.sampled_from(DIGESTS)),
    st.sets(st.sampled_from(DIGESTS)),
)


class TestFreed:
    @settings(max_examples=300, deadline=None)
    @given(st.lists(repository, max_size=4))
    def test_same_total_as_plain_strings(self, drawn) -> None:
        """Over repositories sharing digests (and spellings that only look alike), the total
        is the one the string sets give."""
        repositories = []
        for manifests, deleted, tagged in drawn:
            infos = {
                digest: ManifestInfo(
                    "r",
                    digest,
                    MANIFEST_TYPE,
                    size,
                    tuple(Blob(d, n) for d, n in blobs),
                    tuple(children),
                )
                for digest, blobs, children, size in manifests
            }
            repositories.append((infos, deleted, tagged))
        freed = Freed()
        for infos, deleted, tagged in repositories:
            freed.add_repository(infos, deleted, tagged)
        assert reference_total(repositories) == freed.total()

    @settings(max_examples=200, deadline=None)
    @given(st.lists(repository, max_size=5), st.integers(0, 5))
    def test_keys_exported_and_absorbed_count_the_same(self, drawn, cut) -> None:
        """Repositories added to two counts (those before `cut` to one, the rest to another
        whose keys the first absorbs) give the total of one count of them all."""
        repositories = [
            (
                {
                    digest: ManifestInfo(
                        "r", digest, MANIFEST_TYPE, size,
                        tuple(Blob(d, n) for d, n in blobs), tuple(children),
                    )
                    for digest, blobs, children, size in manifests
                },
                deleted,
                tagged,
            )
            for manifests, deleted, tagged in drawn
        ]  # fmt: skip
        whole, first, rest = Freed(), Freed(), Freed()
        for index, (infos, deleted, tagged) in enumerate(repositories):
            whole.add_repository(infos, deleted, tagged)
            (first if index < cut else rest).add_repository(infos, deleted, tagged)
        first.absorb(rest.export())
        assert whole.total() == first.total() == reference_total(repositories)
