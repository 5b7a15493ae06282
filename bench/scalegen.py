"""A generated registry history: events in time order plus the state the store derives from them.

`History(spec).events()` yields rows of the `events` table in id order (`EVENT_COLUMNS`); as it
goes it folds each event into the per-tag state, pulls by client, manifest details, blob sizes and
daily counts exactly as the writer does (`monitor.store.tags.apply_events`,
`monitor.store.inventory.learn_manifests`), so a store loaded from it is consistent.

The mix (by events): pulls about 80% (a manifest pull by tag or digest, GET or HEAD, then some
of its blobs), pushes about 15% (config and new layers, a shared base layer once per repository,
the manifest; one in twenty an index of two platform manifests), mounts, tag and manifest
deletes, and log-sourced authentication failures and denials. Repositories and users follow a
Zipf-like popularity, so one repository (`busiest`) holds about 13% of the events.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

EVENT_COLUMNS = (
    "id", "event_id", "source", "action", "target_kind", "repository", "tag", "digest",
    "media_type", "size", "from_repository", "actor", "remote_ip", "user_agent", "http_method",
    "http_status", "request_id", "request_uri", "client", "route", "instance", "references",
    "detail", "occurred_at", "received_at",
)  # fmt: skip

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
BLOB = "application/octet-stream"

# (client class, user agent, share of pulls)
CLIENTS = (
    ("docker", "docker/24.0.7 go/go1.20.10 git-commit/311b9ff kernel/6.1.0 os/linux", 30),
    ("containerd", "containerd/v1.7.2", 25),
    ("kubelet", "cri-o/1.28.1 go/go1.20.10 os/linux arch/amd64", 12),
    ("scanner", "Trivy/0.48.0 (linux; amd64)", 10),
    ("podman", "libpod/4.3.1", 5),
    ("skopeo", "skopeo/1.9.3", 5),
    ("crane", "go-containerregistry/v0.19.0", 5),
    ("monitor", "registry-monitor/0.1 (cleanup)", 3),
    ("other", "curl/7.88.1", 5),
)  # fmt: skip
PUSH_CLIENTS = (CLIENTS[0], CLIENTS[4], CLIENTS[5], CLIENTS[6])
INSTANCES = ("191370ad-128a-4acd-b639-9a17c983f8e5", "5b0f6a1e-8a54-4f0a-9a83-0d1c1e6f2b11")


@dataclasses.dataclass(frozen=True)
class Spec:
    events: int = 10_000_000
    repositories: int = 1_000
    tags: int = 100_000
    days: int = 90
    seed: int = 1
    end: datetime = dataclasses.field(
        default_factory=lambda: datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    )

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)


@dataclasses.dataclass(slots=True)
class Tag:
    digest: str | None
    media_type: str | None
    first_seen_at: datetime
    last_pushed_at: datetime | None = None
    last_pushed_by: str | None = None
    last_pulled_at: datetime | None = None
    pull_count: int = 0
    deleted_at: datetime | None = None


@dataclasses.dataclass(slots=True)
class Manifest:
    media_type: str
    size: int
    blobs: list[tuple[str, int]]
    children: list[str]
    pushed_at: datetime


def _digest(kind: str, number: int) -> str:
    return "sha256:" + hashlib.sha256(f"{kind}{number}".encode()).hexdigest()


def _zipf_weights(count: int, exponent: float = 1.0) -> list[float]:
    return [1.0 / (rank**exponent) for rank in range(1, count + 1)]


class History:
    """Events of `spec` (call `events()` once) and, after it, the derived state."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.repositories = [f"team-{i % 40:02d}/service-{i:04d}" for i in range(spec.repositories)]
        self.busiest = self.repositories[0]
        weights = _zipf_weights(spec.repositories)
        total = sum(weights)
        # Tags per repository: at least 5, the rest by the square root of popularity.
        roots = [w**0.5 for w in weights]
        spare = spec.tags - 5 * spec.repositories
        counts = [5 + int(spare * r / sum(roots)) for r in roots]
        counts[0] += spec.tags - sum(counts)
        self.tag_names = [
            [("latest" if j == 0 else f"v1.{j // 100}.{j % 100}") for j in range(n)] for n in counts
        ]
        self.cum_repo = _cumulative([w / total for w in weights])
        self.users = [f"dev-{i:03d}" for i in range(200)]
        self.cum_user = _cumulative(_zipf_weights(len(self.users), 0.8))
        self.ci_users = [f"ci-team-{i:02d}" for i in range(40)]
        self.ips = [f"10.{i // 250}.{i % 250}.{(i * 7) % 250 + 1}" for i in range(2000)]
        self.cum_client = _cumulative([c[2] for c in CLIENTS])
        self.tags: dict[tuple[str, str], Tag] = {}
        self.on_digest: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.pulls: dict[tuple[str, str, str, str], list[Any]] = {}
        self.manifests: dict[tuple[str, str], Manifest] = {}
        self.blob_sizes: dict[tuple[str, str], int] = {}
        self.base_layers: dict[str, list[tuple[str, int]]] = {}
        self.daily: Counter[tuple[date, str, str, str]] = Counter()
        self.counter = 0
        self.last_id = 0
        self.newest: datetime = spec.start

    # --- choices ------------------------------------------------------------------------

    def _pick(self, cumulative: list[float]) -> int:
        return bisect.bisect_left(cumulative, self.rng.random())

    def _repo(self) -> int:
        return self._pick(self.cum_repo)

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    # --- events -------------------------------------------------------------------------

    def events(self) -> Iterator[tuple[Any, ...]]:
        """Rows of `events` in id (and time) order: exactly `spec.events` of them."""
        spec = self.spec
        span = (spec.end - spec.start).total_seconds()
        step = span / spec.events
        produced = 0
        while produced < spec.events:
            at = spec.start + timedelta(seconds=(produced + self.rng.random()) * step)
            for row in self._operation(at):
                produced += 1
                if produced > spec.events:
                    break
                yield row

    def _operation(self, at: datetime) -> list[tuple[Any, ...]]:
        roll = self.rng.random()
        if roll < 0.78:
            return self._pull(at)
        if roll < 0.82:
            return self._push(at)
        if roll < 0.83:
            return self._mount(at)
        if roll < 0.834:
            return self._delete(at)
        return self._log_failure(at)

    def _row(
        self,
        at: datetime,
        *,
        action: str,
        kind: str | None,
        repository: str | None,
        tag: str | None = None,
        digest: str | None = None,
        media_type: str | None = None,
        size: int | None = None,
        from_repository: str | None = None,
        actor: str | None,
        ip: str,
        client: tuple[str, str, int],
        method: str,
        references: list[str] | None = None,
        source: str = "notification",
        status: int | None = None,
        uri: str | None = None,
        detail: str | None = None,
    ) -> tuple[Any, ...]:
        self.last_id += 1
        number = self.last_id
        self.newest = at
        self.daily[(at.date(), repository or "", action, client[0])] += 1
        refs = None
        if references:
            refs = "[" + ",".join(f'"{r}"' for r in references) + "]"
        route = kind if kind in ("manifest", "blob") else None
        return (
            number, f"{self.spec.seed:08x}-{number:012x}-4000-8000-{number * 40503 % 16**12:012x}",
            source, action, kind, repository, tag, digest, media_type, size, from_repository,
            actor, ip, client[1], method, status, f"req-{number:x}", uri, client[0], route,
            INSTANCES[number % 2] if source == "notification" else None, refs, detail,
            at, at + timedelta(milliseconds=3),
        )  # fmt: skip

    def _pull(self, at: datetime) -> list[tuple[Any, ...]]:
        r = self._repo()
        repository = self.repositories[r]
        names = self.tag_names[r]
        tag_name = names[min(int(self.rng.paretovariate(1.2)) - 1, len(names) - 1)]
        tag = self.tags.get((repository, tag_name))
        client = CLIENTS[self._pick(self.cum_client)]
        actor = None if self.rng.random() < 0.3 else self.users[self._pick(self.cum_user)]
        ip = self.ips[self.rng.randrange(len(self.ips))]
        method = "HEAD" if self.rng.random() < 0.3 else "GET"
        if tag is None or tag.digest is None or tag.deleted_at is not None:
            # A tag pushed before the monitor listened: learned from its first pull.
            digest = _digest("m", self._next())
            self.manifests.setdefault(
                (repository, digest), Manifest(OCI_MANIFEST, 1_024, [], [], at)
            )
            by_tag = True
        else:
            digest = tag.digest
            by_tag = self.rng.random() < 0.8
        manifest = self.manifests.get((repository, digest))
        media_type = manifest.media_type if manifest else OCI_MANIFEST
        refs = [d for d, _ in manifest.blobs] if manifest else []
        rows = [
            self._row(
                at, action="pull", kind="manifest", repository=repository,
                tag=tag_name if by_tag else None, digest=digest, media_type=media_type,
                size=manifest.size if manifest else 1_024, actor=actor, ip=ip, client=client,
                method=method, references=refs,
            )
        ]  # fmt: skip
        self._apply_pull(repository, tag_name if by_tag else None, digest, media_type, at,
                         method, client[0])  # fmt: skip
        if method == "GET" and manifest is not None:
            for i, (blob, size) in enumerate(manifest.blobs[: self.rng.randrange(0, 4)]):
                rows.append(
                    self._row(
                        at + timedelta(milliseconds=5 * (i + 1)), action="pull", kind="blob",
                        repository=repository, digest=blob, media_type=BLOB, size=size,
                        actor=actor, ip=ip, client=client, method="GET",
                    )
                )  # fmt: skip
        return rows

    def _push(self, at: datetime) -> list[tuple[Any, ...]]:
        r = self._repo()
        repository = self.repositories[r]
        tag_name = self.rng.choice(self.tag_names[r])
        client = PUSH_CLIENTS[self.rng.randrange(len(PUSH_CLIENTS))]
        actor = self.ci_users[r % len(self.ci_users)]
        ip = self.ips[r % 50]
        rows: list[tuple[Any, ...]] = []
        tick = [at]

        def push_blob(size: int) -> tuple[str, int]:
            digest = _digest("b", self._next())
            tick[0] += timedelta(milliseconds=40)
            rows.append(
                self._row(tick[0], action="push", kind="blob", repository=repository,
                          digest=digest, media_type=BLOB, size=size, actor=actor, ip=ip,
                          client=client, method="PUT")
            )  # fmt: skip
            self.blob_sizes[(repository, digest)] = size
            return digest, size

        def image() -> tuple[str, int, list[tuple[str, int]]]:
            if repository not in self.base_layers:
                self.base_layers[repository] = [push_blob(30_000_000)]
            blobs = [push_blob(1_500)]  # config
            for _ in range(self.rng.randrange(1, 3)):
                blobs.append(push_blob(self.rng.randrange(1_000, 50_000_000)))
            blobs.extend(self.base_layers[repository])
            return _digest("m", self._next()), 400 + 150 * len(blobs), blobs

        if self.rng.random() < 0.05:
            children = []
            for _ in range(2):
                digest, size, blobs = image()
                tick[0] += timedelta(milliseconds=20)
                self._manifest_push(rows, tick[0], repository, None, digest, OCI_MANIFEST,
                                    size, blobs, [], actor, ip, client)  # fmt: skip
                children.append(digest)
            tick[0] += timedelta(milliseconds=20)
            self._manifest_push(rows, tick[0], repository, tag_name, _digest("i", self._next()),
                                OCI_INDEX, 700, [], children, actor, ip, client)  # fmt: skip
        else:
            digest, size, blobs = image()
            tick[0] += timedelta(milliseconds=20)
            media_type = OCI_MANIFEST if self.rng.random() < 0.6 else DOCKER_MANIFEST
            self._manifest_push(rows, tick[0], repository, tag_name, digest, media_type, size,
                                blobs, [], actor, ip, client)  # fmt: skip
        return rows

    def _manifest_push(
        self, rows: list[tuple[Any, ...]], at: datetime, repository: str, tag: str | None,
        digest: str, media_type: str, size: int, blobs: list[tuple[str, int]],
        children: list[str], actor: str, ip: str, client: tuple[str, str, int],
    ) -> None:  # fmt: skip
        references = children or [d for d, _ in blobs]
        rows.append(
            self._row(at, action="push", kind="manifest", repository=repository, tag=tag,
                      digest=digest, media_type=media_type, size=size, actor=actor, ip=ip,
                      client=client, method="PUT", references=references)
        )  # fmt: skip
        self.manifests[(repository, digest)] = Manifest(media_type, size, blobs, children, at)
        if tag is None:
            return
        state = self.tags.get((repository, tag))
        if state is None:
            self.tags[(repository, tag)] = Tag(digest, media_type, at, at, actor)
        else:
            if state.digest is not None:
                self.on_digest[(repository, state.digest)].discard(tag)
            state.digest, state.media_type, state.last_pushed_at = digest, media_type, at
            state.last_pushed_by, state.deleted_at = actor, None
        self.on_digest[(repository, digest)].add(tag)

    def _apply_pull(
        self, repository: str, tag: str | None, digest: str, media_type: str, at: datetime,
        method: str, client: str,
    ) -> None:  # fmt: skip
        if tag is not None:
            state = self.tags.get((repository, tag))
            if state is None:
                state = self.tags[(repository, tag)] = Tag(digest, media_type, at)
                self.on_digest[(repository, digest)].add(tag)
            elif state.digest is None:
                state.digest = digest
            state.last_pulled_at = at
            state.pull_count += 1
            credited = [tag]
        else:
            credited = sorted(self.on_digest.get((repository, digest), ()))
            for name in credited:
                state = self.tags[(repository, name)]
                state.last_pulled_at = at
                state.pull_count += 1
        for name in credited:
            key = (repository, name, method, client)
            record = self.pulls.get(key)
            if record is None:
                self.pulls[key] = [at, 1]
            else:
                record[0] = at
                record[1] += 1

    def _mount(self, at: datetime) -> list[tuple[Any, ...]]:
        source = self.repositories[self._repo()]
        target = self.repositories[self._repo()]
        layers = self.base_layers.get(source)
        if not layers or source == target:
            return self._pull(at)
        digest, size = layers[0]
        self.blob_sizes[(target, digest)] = size
        return [
            self._row(at, action="mount", kind="blob", repository=target, digest=digest,
                      media_type=BLOB, size=size, from_repository=source,
                      actor=self.ci_users[0], ip=self.ips[0], client=PUSH_CLIENTS[0],
                      method="POST")
        ]  # fmt: skip

    def _delete(self, at: datetime) -> list[tuple[Any, ...]]:
        r = self._repo()
        repository = self.repositories[r]
        tag_name = self.rng.choice(self.tag_names[r])
        state = self.tags.get((repository, tag_name))
        if state is None or state.deleted_at is not None or state.digest is None:
            return self._pull(at)
        client = CLIENTS[7]  # cleanup
        digest = state.digest
        if self.rng.random() < 0.5:
            rows = [
                self._row(at, action="delete", kind="tag", repository=repository, tag=tag_name,
                          digest=digest, actor="cleanup", ip=self.ips[1], client=client,
                          method="DELETE")
            ]  # fmt: skip
            state.deleted_at = at
            self.on_digest[(repository, digest)].discard(tag_name)
            return rows
        rows = [
            self._row(at, action="delete", kind="manifest", repository=repository,
                      digest=digest, actor="cleanup", ip=self.ips[1], client=client,
                      method="DELETE")
        ]  # fmt: skip
        for name in self.on_digest.pop((repository, digest), set()):
            self.tags[(repository, name)].deleted_at = at
        return rows

    def _log_failure(self, at: datetime) -> list[tuple[Any, ...]]:
        repository = self.repositories[self._repo()]
        ip = self.ips[self.rng.randrange(len(self.ips))]
        client = CLIENTS[self._pick(self.cum_client)]
        user = self.users[self._pick(self.cum_user)]
        if self.rng.random() < 0.7:
            return [
                self._row(at, action="auth_failure", kind=None, repository=None, actor=user,
                          ip=ip, client=client, method="GET", source="log", status=401,
                          uri="/v2/", detail="basic authentication challenge failed")
            ]  # fmt: skip
        return [
            self._row(at, action="access_denied", kind="manifest", repository=repository,
                      actor=user, ip=ip, client=client, method="PUT", source="log",
                      status=403, uri=f"/v2/{repository}/manifests/latest",
                      detail="requested access to the resource is denied")
        ]  # fmt: skip


def _cumulative(weights: list[float]) -> list[float]:
    total = sum(weights)
    out, running = [], 0.0
    for w in weights:
        running += w / total
        out.append(running)
    out[-1] = 1.0
    return out
