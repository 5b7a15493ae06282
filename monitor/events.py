"""The normalized event model shared by notification intake, log ingestion, detection and cleanup.

No I/O here. Every timestamp is timezone-aware UTC.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson


class Source(StrEnum):
    NOTIFICATION = "notification"
    LOG = "log"


class Action(StrEnum):
    PUSH = "push"
    PULL = "pull"
    DELETE = "delete"
    MOUNT = "mount"
    AUTH_FAILURE = "auth_failure"
    ACCESS_DENIED = "access_denied"
    # Requests seen only in logs that detection needs (catalog walks, tag listings, 404s).
    REQUEST = "request"


class TargetKind(StrEnum):
    MANIFEST = "manifest"
    BLOB = "blob"
    TAG = "tag"
    REPOSITORY = "repository"


class Client(StrEnum):
    DOCKER = "docker"
    CONTAINERD = "containerd"
    PODMAN = "podman"
    SKOPEO = "skopeo"
    CRANE = "crane"
    KUBELET = "kubelet"
    SCANNER = "scanner"
    MONITOR = "monitor"
    OTHER = "other"


INDEX_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)

MANIFEST_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        *INDEX_MEDIA_TYPES,
    }
)

USER_AGENT_PREFIX = "registry-monitor"

# Ordered: the first pattern that matches the user agent names the client class.
_CLIENT_PATTERNS: tuple[tuple[re.Pattern[str], Client], ...] = (
    (re.compile(r"^registry-monitor/", re.I), Client.MONITOR),
    (
        re.compile(
            r"trivy|clair|grype|syft|anchore|snyk|harbor-scanner|xray|twistlock|prisma|"
            r"aqua|neuvector|docker-scout|quay-security|sysdig|wiz",
            re.I,
        ),
        Client.SCANNER,
    ),
    (re.compile(r"^skopeo/", re.I), Client.SKOPEO),
    (re.compile(r"^(podman|libpod|buildah)/|^containers/", re.I), Client.PODMAN),
    (re.compile(r"^(kubelet|cri-o)/", re.I), Client.KUBELET),
    (re.compile(r"^containerd/|^ctr/|^nerdctl/", re.I), Client.CONTAINERD),
    (re.compile(r"^crane/|go-containerregistry|^ko/", re.I), Client.CRANE),
    (re.compile(r"^docker/|^buildkit/|docker-client/", re.I), Client.DOCKER),
)


def classify_client(user_agent: str | None) -> Client:
    """The client class of a request from its User-Agent header."""
    if not user_agent:
        return Client.OTHER
    for pattern, client in _CLIENT_PATTERNS:
        if pattern.search(user_agent):
            return client
    return Client.OTHER


def host_of(addr: str | None) -> str | None:
    """The IP (or host) part of `ip:port`, `[v6]:port`, or a bare address; None when empty."""
    if not addr:
        return None
    addr = addr.strip()
    if addr.startswith("["):
        end = addr.find("]")
        return addr[1:end] if end > 0 else addr
    if addr.count(":") == 1:
        return addr.split(":", 1)[0] or None
    return addr  # bare IPv4, bare IPv6 (several colons), or a host name


def utc(value: datetime) -> datetime:
    """`value` as timezone-aware UTC; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


_WRITE_UTC = orjson.OPT_UTC_Z


def format_timestamp(value: datetime) -> str:
    """`value` as RFC 3339 in UTC with a `Z` (`2026-11-27T04:52:05.123456Z`, microseconds only
    when there are some, as `isoformat` writes it); the inverse of `parse_timestamp`. A naive
    value is taken to be UTC already.

    Written by orjson: `isoformat` and the replacement of its `+00:00` took 2.2 µs a time
    here, orjson 0.8 µs, and a page of a thousand tags formats up to four thousand times."""
    if value.tzinfo is not UTC:
        value = utc(value)
    return orjson.dumps(value, option=_WRITE_UTC)[1:-1].decode()


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened at the registry, from a notification or a log line.

    `event_id` is the deduplication key: the registry's event id for notifications, a stable
    digest of the line's identity for logs.
    """

    event_id: str
    source: Source
    action: Action
    occurred_at: datetime
    target_kind: TargetKind | None = None
    repository: str | None = None
    tag: str | None = None
    digest: str | None = None
    media_type: str | None = None
    size: int | None = None
    from_repository: str | None = None
    actor: str | None = None
    remote_ip: str | None = None
    user_agent: str | None = None
    http_method: str | None = None
    http_status: int | None = None
    request_id: str | None = None
    request_uri: str | None = None
    client: Client = Client.OTHER
    route: str | None = None
    instance: str | None = None
    references: tuple[str, ...] = ()
    detail: str | None = None
    # Rebuilt from the registry's log because its notification never arrived.
    reconstructed: bool = False

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (enums as their values, times as RFC 3339)."""
        return json_fields(self)


def json_fields(record: Any) -> dict[str, Any]:
    """The fields of dataclass `record` as JSON-ready values: times as RFC 3339
    (`format_timestamp`), tuples as lists, everything else as it is."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if isinstance(value, datetime):
            value = format_timestamp(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[field.name] = value
    return out


def parse_timestamp(text: str) -> datetime:
    """RFC 3339 with up to nanoseconds (the registry's format) → aware UTC datetime.

    The one RFC 3339 parser: raises ValueError on anything else (a time out of range included).
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:64]!r}")
    date, clock, fraction, zone = match.groups()
    micro = (fraction or "")[1:7].ljust(6, "0")
    base = datetime.fromisoformat(f"{date}T{clock}.{micro}")
    if zone in ("Z", "z"):
        return base.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(f"{date}T{clock}.{micro}{zone}").astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-01:00 and 0001-01-01T00:00:00+01:00 have no UTC time.
        raise ValueError(f"time {text[:64]!r} is outside the years 1-9999 in UTC") from None


_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|z|[+-]\d{2}:\d{2})", re.A
)
