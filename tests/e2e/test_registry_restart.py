"""End to end: notifications the real registry loses in a restart are rebuilt from its log.

The registry (2.8.2 and 3.1.1) notifies two endpoints: registry-monitor, which follows the
registry's log file, and a capture server that is never interrupted, the control run: what
it receives is what a monitor that never went down would have stored (the intake tests show
that store and capture agree). While the monitor is down the registry queues the monitor's
notifications in memory; it is then killed with SIGKILL, so they are lost for good. Both are
started again; the store must end with exactly the captured events, each once.

A rebuilt event carries what the registry's log tells of its request: action, repository,
tag, the digest the request named, address, user agent, method, and the user on 3.x (2.8
logs no user on a successful request); a manifest pulled by tag takes the digest the tag's
stored history shows. The digest a manifest was pushed by tag to is not in the log: the monitor
asks the registry (its URL is configured) for the tag's digest when that push is still the
newest push of its tag.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from monitor.ingest.notification import parse_envelope
from tests.harness import (
    NOTIFIED_FIELDS,
    TOKEN,
    USERS,
    Capture,
    MonitorProcess,
    build_images,
    capture_server,
    end_marker,
    endpoint,
    notifying_registry_config,
    pull,
    push,
    running_monitor,
    wait_until,
)
from tests.registry_harness import RegistryHandle, registry_binary, running_registry

REGISTRY_ACTIONS = ("push", "pull", "delete", "mount")
LOGGED_FIELDS = (
    "action",
    "target_kind",
    "repository",
    "tag",
    "from_repository",
    "remote_ip",
    "user_agent",
    "http_method",
    "request_id",
    "client",
)


def captured(capture: Capture) -> dict[str, dict[str, Any]]:
    """The control run: every event the registry sent, normalized, by event id."""
    out: dict[str, dict[str, Any]] = {}
    for body in list(capture.bodies):
        for event in parse_envelope(body, "application/json").events:
            out[event.event_id] = json.loads(json.dumps(event.to_dict()))
    return out


def key(event: dict[str, Any]) -> tuple[str, str, str, str]:
    """One event of one request: its request id, action, kind, and the tag it names, else
    its digest (a request sends at most one event per key)."""
    name = event["tag"] or event["digest"]
    return event["request_id"], event["action"], event["target_kind"], name


def stored(monitor: MonitorProcess) -> list[dict[str, Any]]:
    return [e for e in monitor.all_events() if e["action"] in REGISTRY_ACTIONS]


def rebuilt_form(event: dict[str, Any], version: str) -> dict[str, Any]:
    """What the log tells of a captured event: the logged fields, the digest (a pull by tag
    takes it from the tag's history; a push by tag from the registry, every lost push by tag
    here being the newest push of its tag), and the user on 3.x."""
    return {
        **{f: event[f] for f in LOGGED_FIELDS},
        "digest": event["digest"],
        "actor": event["actor"] if version == "3.1" else None,
        "source": "log",
        "reconstructed": True,
    }


def deletes_of(capture: Capture, repository: str) -> list[dict[str, Any]]:
    return [
        e
        for e in captured(capture).values()
        if e["action"] == "delete" and e["repository"] == repository
    ]


def delete_manifest(registry: RegistryHandle, repository: str, digest: str) -> None:
    answer = httpx.delete(
        f"{registry.url}/v2/{repository}/manifests/{digest}",
        auth=("alice", USERS["alice"]),
        timeout=30,
    )
    assert 202 == answer.status_code, answer.text


def metric(monitor: MonitorProcess, name: str) -> float:
    for line in monitor.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not exported")


class TestRegistryKilledWhileTheMonitorIsDown:
    def test_the_store_ends_with_exactly_the_events_of_the_control_run(
        self, tmp_path: Path, db_url: str, registry_version: str
    ) -> None:
        """Pushes and pulls delivered; then, with the monitor down, an index push, pushes by
        tag (a new tag, and a tag again), pulls by tag and by digest and a delete by digest
        (whose tag deletes come from the tags' history) are queued and lost to SIGKILL; both restart, a pull is delivered
        by the new registry process. Every captured event is stored once: the delivered ones
        as sent, the lost ones rebuilt from the followed log with every field it names."""
        layout = build_images(tmp_path / "oci", salt=tmp_path.name)
        registry_dir = tmp_path / "registry"
        registry_dir.mkdir()
        log = registry_dir / "registry.log"
        log.touch()
        binary = registry_binary(registry_version)
        with (
            capture_server() as capture,
            running_monitor(
                tmp_path,
                db_url,
                REGISTRY_MONITOR_LOGS_PATHS=str(log),
                REGISTRY_MONITOR_RECONCILE_SETTLE_SECONDS="5",
                REGISTRY_MONITOR_RECONCILE_INTERVAL_SECONDS="1",
            ) as monitor,
        ):
            config = notifying_registry_config(
                registry_dir,
                endpoints=[
                    endpoint("monitor", f"{monitor.url}/v1/notifications", token=TOKEN),
                    endpoint("capture", capture.url),
                ],
            )
            with running_registry(
                directory=registry_dir, config=config, binary=binary, append_log=True
            ) as registry:
                host = registry.host
                push(layout, "hello", f"{host}/library/hello:1.0")
                push(layout, "hello", f"{host}/library/hello:latest")
                push(layout, "app", f"{host}/team/app:v1", extra=("--format", "v2s2"))
                pull(f"{host}/library/hello:1.0", tmp_path / "pull-1")
                marker = end_marker(registry.url, "library/hello", "1.0")
                wait_until(
                    lambda: any(e["user_agent"] == marker for e in captured(capture).values()),
                    timeout=60,
                    what="the marker's event at the capture",
                )
                wait_until(
                    lambda: set(captured(capture)) == {e["event_id"] for e in stored(monitor)},
                    timeout=60,
                    what="the delivered events in the store",
                )
                delivered_before = set(captured(capture))

                monitor.stop()
                push(layout, "multi", f"{host}/team/app:multi", extra=("--all",))
                push(layout, "app", f"{host}/team/app:v2", extra=("--format", "v2s2"))
                pull(f"{host}/team/app:v1", tmp_path / "pull-2")
                push(layout, "app", f"{host}/team/app:v1", extra=("--format", "v2s2"))
                pull(f"{host}/library/hello@{layout.digests['hello']}", tmp_path / "pull-3")
                delete_manifest(registry, "library/hello", layout.digests["hello"])
                # The capture gets the events in the order they were queued; the delete's
                # three events (the manifest and its tags 1.0 and latest) come last.
                wait_until(
                    lambda: len(deletes_of(capture, "library/hello")) == 3,
                    timeout=60,
                    what="the delete's events at the capture",
                )
                wait_until(
                    lambda: "retryingsink" in registry.log(),
                    timeout=30,
                    what="the registry retrying the monitor's notifications",
                )
                lost = set(captured(capture)) - delivered_before
                registry.process.send_signal(signal.SIGKILL)
                registry.process.wait(timeout=30)

            with running_registry(
                directory=registry_dir, config=config, binary=binary, append_log=True
            ) as registry:
                # the restarted monitor asks the registry for the digests of lost pushes by tag
                monitor.env |= {
                    "REGISTRY_MONITOR_CLEANUP_REGISTRY_URL": registry.url,
                    "REGISTRY_MONITOR_CLEANUP_USERNAME": "alice",
                    "REGISTRY_MONITOR_CLEANUP_PASSWORD": USERS["alice"],
                }
                monitor.start()
                pull(f"{registry.host}/team/app:multi", tmp_path / "pull-4")
                # its HEAD requests are pulls the registry notifies: wait for the same events
                wait_until(
                    lambda: (
                        {key(e) for e in stored(monitor)}
                        == {key(e) for e in captured(capture).values()}
                    ),
                    timeout=90,
                    what="the lost events rebuilt and the new ones delivered",
                )
                # rebuilt in the applier's process, whose counts reach `/metrics` within a second
                wait_until(
                    lambda: (
                        metric(monitor, "registry_monitor_events_reconstructed_total") >= len(lost)
                    ),
                    timeout=10,
                    what="the rebuilt events counted",
                )
                control = captured(capture)
                events = stored(monitor)
                rebuilt_count = metric(monitor, "registry_monitor_events_reconstructed_total")
                starts = metric(monitor, "registry_monitor_registry_starts_total")
                started = monitor.get("/v1/registry/starts").json()["items"]
                listed = monitor.get("/v1/events", reconstructed="true", limit="1000").json()
                tags = {
                    (t["repository"], t["tag"]): t for t in monitor.get("/v1/tags").json()["items"]
                }
                instances = {e["instance"] for e in control.values()}

        assert 2 == len(instances)  # the control run saw the registry restart
        # the restart is recorded from the log: the same two instance ids, newest first
        assert (2.0, instances) == (starts, {s["instance"] for s in started})
        assert started[0]["started_at"] > started[1]["started_at"]
        # lost: the index push (4 blobs, 2 children, the index), the pushes of v2 and again of
        # v1 (3 blob HEADs and the manifest each), the pulls by tag and by digest, the delete
        # and its two tags
        assert {
            ("push", "blob"): 4,
            ("push", "manifest"): 5,
            ("pull", "blob"): 11,
            ("pull", "manifest"): 2,
            ("delete", "manifest"): 1,
            ("delete", "tag"): 2,
        } == Counter((control[i]["action"], control[i]["target_kind"]) for i in lost)
        by_key = {key(e): e for e in events}
        assert len(by_key) == len(events) == len(control), "an event stored twice, or extra"
        assert {key(e) for e in control.values()} == set(by_key)
        for event_id, sent in control.items():
            got = by_key[key(sent)]
            if event_id in lost:
                assert rebuilt_form(sent, registry_version) == {
                    f: got[f] for f in rebuilt_form(sent, registry_version)
                }, sent
            else:
                assert {f: sent[f] for f in NOTIFIED_FIELDS} == {f: got[f] for f in NOTIFIED_FIELDS}
                assert got["reconstructed"] is False
        assert len(lost) == rebuilt_count == len(listed["items"])
        assert {key(control[i]) for i in lost} == {key(e) for e in listed["items"]}
        # the per-tag state follows the rebuilt events: the delete by digest removed both tags
        assert tags[("library/hello", "1.0")]["deleted_at"] is not None
        assert tags[("library/hello", "latest")]["deleted_at"] is not None
        assert tags[("team/app", "v1")]["deleted_at"] is None
        # pushed while notifications were lost: the log names no digest, the registry told it
        for tag in ("v1", "v2", "multi"):
            (digest,) = {
                e["digest"]
                for i, e in control.items()
                if i in lost and e["action"] == "push" and e["tag"] == tag
            }
            assert digest == tags[("team/app", tag)]["digest"], tag
            assert tags[("team/app", tag)]["last_pushed_at"] is not None
