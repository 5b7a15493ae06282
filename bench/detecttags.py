"""Benchmark: judging manifest deletes while detection remembers many protected tags.

    python -m bench.detecttags [--tags N] [--deletes N] [--repositories N]

The detector (default rules) first judges `--tags` pushes of protected tags (`v<n>`, default
87,000, the tags of `bench.scale`'s store) spread over `--repositories` repositories (1,000),
then `--deletes` manifest deletes by digest (5,000, digests no tag points at: a cleanup's
deletes of untagged manifests), one repository after another. Reports the time per delete
and what saving and loading the detector's state cost. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from datetime import timedelta
from typing import Any

from monitor.detect.config import default_detect_config
from monitor.detect.engine import Detector
from monitor.detect.roles import Roles
from monitor.detect.state import DetectorState, state_from_json, state_to_json
from monitor.events import Action, Event, TargetKind
from tests.fixture_events import BASE_TIME, make_event


def digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def manifest_event(action: Action, n: int, repositories: int, at_ms: int, **fields: Any) -> Event:
    """The `n`th event on a manifest, in one of `repositories`, `at_ms` after BASE_TIME."""
    return make_event(
        action=action,
        http_method="PUT" if action is Action.PUSH else "DELETE",
        target_kind=TargetKind.MANIFEST,
        repository=f"team-{n % repositories:04d}/app",
        occurred_at=BASE_TIME + timedelta(milliseconds=at_ms),
        **fields,
    )


def pushes(tags: int, repositories: int) -> list[Event]:
    return [
        manifest_event(Action.PUSH, n, repositories, n, tag=f"v{n}", digest=digest(n))
        for n in range(tags)
    ]


def deletes(count: int, repositories: int, after: int) -> list[Event]:
    """Deletes by digest of manifests no tag points at (a cleanup's untagged ones)."""
    return [
        manifest_event(
            Action.DELETE,
            n,
            repositories,
            after + n,
            tag=None,
            digest=digest(10**9 + n),
            actor="cleanup-bot",
        )
        for n in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=87_000)
    parser.add_argument("--deletes", type=int, default=5_000)
    parser.add_argument("--repositories", type=int, default=1_000)
    args = parser.parse_args()

    detector = Detector(default_detect_config(), Roles())
    pushed = pushes(args.tags, args.repositories)
    deleted = deletes(args.deletes, args.repositories, after=args.tags)
    now = deleted[-1].occurred_at if deleted else pushed[-1].occurred_at
    _, state = detector.process(pushed, DetectorState(), now)
    # flat before version 2 of the state, when run against an older tree
    remembered = sum(len(v) if isinstance(v, dict) else 1 for v in state.tags.values())

    started = time.perf_counter()
    detector.process(deleted, state, now)
    judged = time.perf_counter() - started

    started = time.perf_counter()
    saved = state_to_json(state)
    save = time.perf_counter() - started
    started = time.perf_counter()
    state_from_json(saved)
    load = time.perf_counter() - started

    print("| tags remembered | deletes | ms per delete | state MB | save ms | load ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {remembered:,} | {args.deletes:,} | {judged / max(args.deletes, 1) * 1000:.3f} "
        f"| {len(saved.encode()) / 1e6:.2f} | {save * 1000:.1f} | {load * 1000:.1f} |"
    )


if __name__ == "__main__":
    main()
