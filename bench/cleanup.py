"""Benchmark: plan cleanup for 1,000 repositories x 1,000 tags.

    python -m bench.cleanup [--repos N] [--tags N] [--tracemalloc]

Prints a markdown table: time to plan, and memory (peak RSS of the process, and with
--tracemalloc the planner's own peak allocation, which is slower to measure).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from monitor.cleanup.model import Blob, ManifestInfo, PullRecord, TagState
from monitor.cleanup.planner import plan
from monitor.cleanup.policy import load_policies
from monitor.events import Client

NOW = datetime(2026, 6, 1, tzinfo=UTC)
POLICIES = """
- name: everything
  repositories: ["**"]
  protect: {tags: ["latest", "v*"], grace_hours: 48, min_tags: 5}
  keep: {most_recent: 10, pulled_within_days: 30}
  delete:
    - {tags: ["pr-*"], older_than_days: 14}
    - {not_pulled_days: 90}
    - {untagged: true, older_than_days: 7}
  pulls: {ignore_clients: [scanner, monitor]}
"""


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def build(repos: int, tags: int, seed: int = 7) -> tuple[list[TagState], list[ManifestInfo]]:
    """Synthetic store content: ~70% distinct digests per repository, shared base layers."""
    rng = random.Random(seed)
    base = [Blob(_digest(f"base{i}"), 30_000_000 + i) for i in range(20)]
    clients = list(Client)
    states: list[TagState] = []
    manifests: list[ManifestInfo] = []
    for r in range(repos):
        repo = f"team{r % 50}/app{r}"
        digests = [_digest(f"{repo}@{i}") for i in range(max(1, tags * 7 // 10))]
        for i, digest in enumerate(digests):
            pushed = NOW - timedelta(days=rng.uniform(0, 400))
            manifests.append(
                ManifestInfo(
                    repo,
                    digest,
                    "application/vnd.oci.image.manifest.v1+json",
                    800,
                    (base[i % 20], base[(i + 7) % 20], Blob(_digest(f"{digest}cfg"), 2_000)),
                    (),
                    pushed,
                )
            )
        for t in range(tags):
            kind = rng.random()
            name = f"pr-{t}" if kind < 0.4 else (f"v1.{t}" if kind < 0.45 else f"build-{t}")
            if t == 0:
                name = "latest"
            pushed_days = rng.uniform(0, 400)
            pulls = tuple(
                PullRecord(
                    rng.choice(("GET", "HEAD")),
                    rng.choice(clients),
                    NOW - timedelta(days=rng.uniform(0, pushed_days)),
                )
                for _ in range(rng.randint(0, 2))
            )
            states.append(
                TagState(
                    repo,
                    name,
                    digests[rng.randrange(len(digests))],
                    NOW - timedelta(days=pushed_days + rng.uniform(0, 10)),
                    NOW - timedelta(days=pushed_days),
                    "application/vnd.oci.image.manifest.v1+json",
                    None,
                    pulls,
                )
            )
    return states, manifests


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cleanup")
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args(argv)
    policies = load_policies(POLICIES)
    started = time.perf_counter()
    states, manifests = build(args.repos, args.tags)
    built = time.perf_counter() - started
    gc.collect()
    rss_input = _rss_mib()
    coverage = [(NOW - timedelta(days=500), NOW)]
    if args.tracemalloc:
        tracemalloc.start()
    started = time.perf_counter()
    result = plan(policies, states, manifests, coverage, NOW)
    elapsed = time.perf_counter() - started
    traced = tracemalloc.get_traced_memory()[1] / 2**20 if args.tracemalloc else None
    rss_peak = _rss_mib()
    counts = result.counts()
    rows = [
        ("repositories x tags", f"{args.repos} x {args.tags} = {len(states):,}"),
        ("manifests", f"{len(manifests):,}"),
        ("build input (s)", f"{built:.2f}"),
        ("plan (s)", f"{elapsed:.2f}"),
        ("peak RSS after input (MiB)", f"{rss_input:.0f}"),
        ("peak RSS after plan (MiB)", f"{rss_peak:.0f}"),
        ("planner peak, tracemalloc (MiB)", f"{traced:.0f}" if traced is not None else "-"),
        ("decisions", ", ".join(f"{k} {v:,}" for k, v in counts.items())),
        ("digest actions", f"{len(result.actions):,}"),
        ("bytes freed (est.)", f"{result.bytes_freed:,}"),
    ]
    print("| measure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
