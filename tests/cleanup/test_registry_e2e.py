"""Plan, apply and restore against the real registries (2.8 and 3.1) over TLS."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.cleanup.apply import ApplyOptions, DeleteMode, apply, resolve_delete_mode, restore
from monitor.cleanup.journal import Outcome, SkipReason
from monitor.cleanup.model import Blob, ManifestInfo, TagRef, TagState
from monitor.cleanup.plan import Decision, Plan
from monitor.cleanup.planner import plan
from monitor.cleanup.registry_client import (
    Credentials,
    HttpRegistryClient,
    RegistryClient,
    make_http_client,
)
from monitor.events import INDEX_MEDIA_TYPES
from tests.cleanup.doubles import MemoryJournal
from tests.cleanup.factories import one_policy
from tests.registry_harness import (
    RegistryHandle,
    build_oci_layout,
    cert_dir_for,
    free_port,
    make_tls_cert,
    registry_binary,
    registry_config,
    running_registry,
    skopeo_copy,
    write_htpasswd,
)
from tests.token_server import TokenServer, running_token_server

pytestmark = pytest.mark.registry

USERS = {"alice": "alice-pw-1"}
CREDS = "alice:alice-pw-1"
REPO = "team/app"
PUSHES = [
    ("a", "pr-1", False),
    ("a", "pr-1b", False),
    ("b", "pr-2", False),
    ("b", "main", False),
    ("c", "release", False),
    ("multi", "pr-3", True),
]
POLICY = "  delete: [{tags: ['pr-*']}]\n"
OPTIONS = ApplyOptions(min_interval_seconds=0.05, max_repository_share=1.0)


@dataclasses.dataclass(frozen=True)
class Setup:
    layout: Path
    digests: dict[str, str]
    cert: Path
    key: Path
    cert_dir: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    base = tmp_path_factory.mktemp("images")
    digests = build_oci_layout(
        directory=base / "oci",
        images={
            "a": [{"a.txt": "a\n"}],
            "b": [{"b.txt": "b\n"}],
            "c": [{"c.txt": "c\n"}],
            "m": [{"bin/tool": "tool\n"}],
        },
        indexes={"multi": [("amd64", "m"), ("arm64", "m")]},
    )
    cert, key = make_tls_cert(directory=base / "tls")
    return Setup(base / "oci", digests, cert, key, cert_dir_for(cert=cert, directory=base / "ca"))


def push_all(setup: Setup, registry: RegistryHandle) -> None:
    for image, tag, everything in PUSHES:
        skopeo_copy(
            source=f"oci:{setup.layout}:{image}",
            destination=f"docker://{registry.host}/{REPO}:{tag}",
            credentials=CREDS,
            cert_dir=setup.cert_dir,
            all_images=everything,
        )


def snapshot(client: RegistryClient, now: datetime) -> tuple[list[TagState], list[ManifestInfo]]:
    """What the store would know: every tag pushed 100 days ago, every manifest's blobs."""
    pushed = now - timedelta(days=100)
    tags: list[TagState] = []
    manifests: dict[tuple[str, str], ManifestInfo] = {}
    pending: list[tuple[str, str]] = []
    for repo in client.catalog():
        for tag in client.tags(repo):
            head = client.head_manifest(repo, tag)
            assert head is not None
            tags.append(TagState(repo, tag, head.digest, pushed, pushed, head.media_type))
            pending.append((repo, head.digest))
    while pending:
        repo, digest = pending.pop()
        if (repo, digest) in manifests:
            continue
        got = client.get_manifest(repo, digest)
        body = json.loads(got.body)
        if got.media_type in INDEX_MEDIA_TYPES:
            children = tuple(m["digest"] for m in body["manifests"])
            pending.extend((repo, c) for c in children)
            info = ManifestInfo(repo, digest, got.media_type, len(got.body), children=children)
        else:
            layers = [Blob(layer["digest"], layer["size"]) for layer in body["layers"]]
            blobs = (Blob(body["config"]["digest"], body["config"]["size"]), *layers)
            info = ManifestInfo(repo, digest, got.media_type, len(got.body), blobs=blobs)
        manifests[(repo, digest)] = info
    return tags, list(manifests.values())


def make_plan(client: RegistryClient, now: datetime) -> Plan:
    tags, manifests = snapshot(client, now)
    return plan(one_policy(POLICY), tags, manifests, ((now - timedelta(days=400), now),), now)


def clock() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def basic_registry(
    setup: Setup, tmp_path: Path, registry_version: str
) -> Iterator[tuple[RegistryHandle, HttpRegistryClient]]:
    htpasswd = write_htpasswd(path=tmp_path / "htpasswd", users=USERS)
    config = registry_config(
        root=tmp_path, port=free_port(), tls=(setup.cert, setup.key), htpasswd=htpasswd
    )
    with running_registry(
        directory=tmp_path / "registry", config=config, binary=registry_binary(registry_version)
    ) as registry:
        push_all(setup, registry)
        with make_http_client(ca_file=setup.cert) as http:
            yield (
                registry,
                HttpRegistryClient(
                    registry.url, http=http, credentials=Credentials("alice", USERS["alice"])
                ),
            )


class TestRegistryEndToEnd:
    def test_plan_decides_on_real_content(self, basic_registry, setup: Setup) -> None:
        """The plan deletes the pr-* digests that hold no kept tag, with one action per digest."""
        _, client = basic_registry
        current = make_plan(client, clock())
        expected = sorted(
            [(setup.digests["a"], ("pr-1", "pr-1b")), (setup.digests["multi"], ("pr-3",))]
        )
        assert expected == sorted((a.digest, a.tags) for a in current.actions)
        assert current.bytes_freed > 0

    def test_apply_deletes_exactly_the_planned_tags(self, basic_registry) -> None:
        """After apply the registry's tag list is the plan's kept tags."""
        _, client = basic_registry
        current = make_plan(client, clock())
        result = apply(current, client, MemoryJournal(), clock=clock, options=OPTIONS)
        kept = sorted(d.tag for d in current.decisions if d.decision is not Decision.DELETE)
        expected = (["main", "pr-2", "release"], ["main", "pr-2", "release"])
        assert expected == (kept, sorted(client.tags(REPO)))
        expected_deleted = {TagRef(REPO, t) for t in ("pr-1", "pr-1b", "pr-3")}
        assert expected_deleted == result.deleted_tags()

    def test_apply_asks_the_registry_how_to_delete(self, basic_registry, registry_version) -> None:
        """Without a configured mode, 3.1 gets one DELETE per tag and 2.8 a DELETE per
        digest; asking changes nothing in the registry."""
        _, client = basic_registry
        before = sorted(client.tags(REPO))
        expected_mode = {"2.8": DeleteMode.DIGEST, "3.1": DeleteMode.TAG}[registry_version]
        assert (expected_mode, before) == (
            resolve_delete_mode(client, DeleteMode.AUTO, REPO)[0],
            sorted(client.tags(REPO)),
        )
        result = apply(
            make_plan(client, clock()), client, MemoryJournal(), clock=clock, options=OPTIONS
        )
        assert expected_mode == result.delete_mode

    def test_restore_brings_tags_back_with_same_digest(self, basic_registry, setup: Setup) -> None:
        """Restore PUTs the saved manifests back; each tag has its old digest again."""
        _, client = basic_registry
        journal = MemoryJournal()
        current = make_plan(client, clock())
        apply(current, client, journal, clock=clock, options=OPTIONS)
        entries = restore(client, journal, current.plan_id, clock=clock)
        expected_failures: list[object] = []
        assert expected_failures == [e for e in entries if e.outcome is not Outcome.RESTORED]
        restored = {}
        for tag in ("pr-1", "pr-1b", "pr-3"):
            head = client.head_manifest(REPO, tag)
            restored[tag] = head.digest if head else None
        expected = {
            "pr-1": setup.digests["a"],
            "pr-1b": setup.digests["a"],
            "pr-3": setup.digests["multi"],
        }
        assert expected == restored

    def test_moved_tag_is_skipped(self, basic_registry, setup: Setup) -> None:
        """A tag pushed to a new digest between plan and apply is skipped and reported."""
        registry, client = basic_registry
        current = make_plan(client, clock())
        skopeo_copy(
            source=f"oci:{setup.layout}:c",
            destination=f"docker://{registry.host}/{REPO}:pr-1",
            credentials=CREDS,
            cert_dir=setup.cert_dir,
        )
        result = apply(current, client, MemoryJournal(), clock=clock, options=OPTIONS)
        skipped = [(e.tags, e.reason) for e in result.outcomes(Outcome.SKIPPED)]
        expected_skipped = [(("pr-1",), SkipReason.TAG_MOVED)]
        assert expected_skipped == skipped
        head = client.head_manifest(REPO, "pr-1")
        expected = (["main", "pr-1", "pr-2", "release"], setup.digests["c"])
        assert expected == (sorted(client.tags(REPO)), head.digest if head else None)

    def test_catalog_and_tags_follow_link_pages(self, basic_registry, setup: Setup) -> None:
        """With one entry per page the client still lists every tag."""
        registry, _ = basic_registry
        with make_http_client(ca_file=setup.cert) as http:
            paged = HttpRegistryClient(
                registry.url,
                http=http,
                credentials=Credentials("alice", USERS["alice"]),
                page_size=1,
            )
            expected = (["team/app"], sorted(t for _, t, _ in PUSHES))
            assert expected == (paged.catalog(), sorted(paged.tags(REPO)))


@pytest.fixture
def token_registry(
    setup: Setup, tmp_path: Path, registry_version: str
) -> Iterator[tuple[TokenServer, HttpRegistryClient]]:
    with running_token_server(directory=tmp_path / "token", users=USERS) as tokens:
        config = registry_config(
            root=tmp_path,
            port=free_port(),
            tls=(setup.cert, setup.key),
            token=tokens.registry_auth(),
        )
        with running_registry(
            directory=tmp_path / "registry",
            config=config,
            binary=registry_binary(registry_version),
        ) as registry:
            push_all(setup, registry)
            with make_http_client(ca_file=setup.cert) as http:
                yield (
                    tokens,
                    HttpRegistryClient(
                        registry.url, http=http, credentials=Credentials("alice", USERS["alice"])
                    ),
                )


class TestTokenAuthEndToEnd:
    def test_plan_and_apply_with_bearer_tokens(self, token_registry) -> None:
        """The client fetches tokens per scope and plan/apply deletes the planned tags."""
        tokens, client = token_registry
        tokens.requests.clear()
        current = make_plan(client, clock())
        apply(current, client, MemoryJournal(), clock=clock, options=OPTIONS)
        expected = ["main", "pr-2", "release"]
        assert expected == sorted(client.tags(REPO))
        scopes = {s for r in tokens.requests for s in r["scope"]}
        expected_scopes = {
            "registry:catalog:*",
            f"repository:{REPO}:pull",
            f"repository:{REPO}:delete",
        }
        assert expected_scopes == scopes
