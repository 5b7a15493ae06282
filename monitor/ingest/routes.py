"""Registry API routes of a request URI (`/v2/<name>/manifests/<reference>` …); pure."""

from __future__ import annotations

from monitor.events import TargetKind
from monitor.ingest import memo

ROUTES = ("base", "manifest", "blob", "upload", "tags", "catalog", "other")


def route_of(uri: str | None) -> str:
    """The route kind of a request URI: base, manifest, blob, upload, tags, catalog or other."""
    if not uri:
        return "other"
    route = memo.ROUTES.get(uri)
    if route is None:
        route = memo.ROUTES.remember(uri, _route_of(uri))
    return route


def _route_of(uri: str) -> str:
    query = uri.find("?")
    path = uri if query < 0 else uri[:query]
    if path in ("/v2/", "/v2"):
        return "base"
    if not path.startswith("/v2/"):
        return "other"
    if path == "/v2/_catalog":
        return "catalog"
    if path.endswith("/tags/list"):
        return "tags"
    if "/manifests/" in path:
        return "manifest"
    if "/blobs/uploads" in path:
        return "upload"
    if "/blobs/" in path:
        return "blob"
    return "other"


def repository_of(uri: str | None) -> str | None:
    """The repository named by a `/v2/<name>/…` URI, or None."""
    if not uri or not uri.startswith("/v2/"):
        return None
    path = uri.split("?", 1)[0][4:]
    for marker in ("/manifests/", "/blobs/", "/tags/list"):
        index = path.find(marker)
        if index > 0:
            return path[:index]
    return None


def reference_of(uri: str | None) -> str | None:
    """The tag or digest of a `/v2/<name>/manifests/<reference>` URI, or None."""
    if not uri:
        return None
    path = uri.split("?", 1)[0]
    index = path.find("/manifests/")
    if index < 0:
        return None
    return path[index + len("/manifests/") :] or None


def is_enumeration(route: str, status: int) -> bool:
    """Whether a response lets a client list what exists: catalog, tag lists, manifest 404s."""
    return route in ("catalog", "tags") or (route == "manifest" and status == 404)


def target_kind(route: str) -> TargetKind | None:
    """The kind of object a route kind is about, if any."""
    if route == "manifest":
        return TargetKind.MANIFEST
    if route in ("blob", "upload"):
        return TargetKind.BLOB
    if route == "tags":
        return TargetKind.REPOSITORY
    return None


def split_reference(reference: str | None) -> tuple[str | None, str | None]:
    """A manifest reference as (tag, None) or (None, digest)."""
    if not reference:
        return None, None
    if ":" in reference:
        return None, reference
    return reference, None
