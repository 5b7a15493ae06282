from __future__ import annotations

import pytest

from monitor.events import TargetKind
from monitor.ingest.routes import (
    is_enumeration,
    reference_of,
    repository_of,
    route_of,
    split_reference,
    target_kind,
)


class TestRoutes:
    @pytest.mark.parametrize(
        ("uri", "route", "repository"),
        [
            ("/v2/", "base", None),
            ("/v2", "base", None),
            ("/v2/_catalog?n=100", "catalog", None),
            ("/v2/a/b/tags/list", "tags", "a/b"),
            ("/v2/a/manifests/latest", "manifest", "a"),
            ("/v2/a/blobs/sha256:00", "blob", "a"),
            ("/v2/a/blobs/uploads/", "upload", "a"),
            ("/v2/a/blobs/uploads/u1?_state=x", "upload", "a"),
            ("/", "other", None),
            (None, "other", None),
        ],
    )
    def test_route_and_repository(
        self, uri: str | None, route: str, repository: str | None
    ) -> None:
        """Every URI maps to one bounded route kind and, when it names one, a repository."""
        assert (route, repository) == (route_of(uri), repository_of(uri))

    @pytest.mark.parametrize(
        ("uri", "reference", "parts"),
        [
            ("/v2/a/manifests/1.0", "1.0", ("1.0", None)),
            ("/v2/a/manifests/sha256:ab?x=1", "sha256:ab", (None, "sha256:ab")),
            ("/v2/a/blobs/sha256:ab", None, (None, None)),
        ],
    )
    def test_manifest_reference(
        self, uri: str, reference: str | None, parts: tuple[str | None, str | None]
    ) -> None:
        """A manifest URI names a tag or a digest; other URIs name neither."""
        assert (reference, parts) == (reference_of(uri), split_reference(reference_of(uri)))

    @pytest.mark.parametrize(
        ("route", "status", "expected"),
        [
            ("catalog", 200, True),
            ("tags", 401, True),
            ("manifest", 404, True),
            ("manifest", 200, False),
            ("blob", 404, False),
        ],
    )
    def test_enumeration(self, route: str, status: int, expected: bool) -> None:
        """Catalog walks, tag listings and manifest 404s are what enumeration looks like."""
        assert expected == is_enumeration(route, status)

    def test_target_kinds(self) -> None:
        """Route kinds map to the object they are about."""
        expected = [TargetKind.MANIFEST, TargetKind.BLOB, TargetKind.BLOB, TargetKind.REPOSITORY]
        assert expected == [target_kind(r) for r in ("manifest", "blob", "upload", "tags")]
        assert target_kind("catalog") is None
