"""Benchmark: plan cleanup for 1,000 repositories x 1,000 tags.

    python -m bench.cleanup [--repos N] [--tags N] [--tracemalloc]

Prints a markdown table: time to plan, and memory (peak RSS of the process, and with
--tracemalloc the planner's own peak allocation, which is slower to measure).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import random
import resource
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from monitor.cleanup.model import Blob, ManifestInfo, PullRecord, RepositoryState, TagState
from monitor.cleanup.plan import Plan
from monitor.cleanup.planner import plan, plan_repositories
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


MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CLIENTS = list(Client)


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


BASE = [Blob(_digest(f"base{i}"), 30_000_000 + i) for i in range(20)]


def repository(r: int, tags: int, rng: random.Random) -> RepositoryState:
    """One synthetic repository: ~70% distinct digests among its tags, shared base layers."""
    repo = f"team{r % 50}/app{r}"
    digests = [_digest(f"{repo}@{i}") for i in range(max(1, tags * 7 // 10))]
    manifests = [
        ManifestInfo(
            repo,
            digest,
            MANIFEST,
            800,
            (BASE[i % 20], BASE[(i + 7) % 20], Blob(_digest(f"{digest}cfg"), 2_000)),
            (),
            NOW - timedelta(days=rng.uniform(0, 400)),
        )
        for i, digest in enumerate(digests)
    ]
    states: list[TagState] = []
    for t in range(tags):
        kind = rng.random()
        name = f"pr-{t}" if kind < 0.4 else (f"v1.{t}" if kind < 0.45 else f"build-{t}")
        if t == 0:
            name = "latest"
        pushed_days = rng.uniform(0, 400)
        pulls = tuple(
            PullRecord(
                rng.choice(("GET", "HEAD")),
                rng.choice(CLIENTS),
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
                MANIFEST,
                None,
                pulls,
            )
        )
    return RepositoryState(repo, states, manifests)


def repositories(repos: int, tags: int, seed: int = 7) -> Iterator[RepositoryState]:
    rng = random.Random(seed)
    for r in range(repos):
        yield repository(r, tags, rng)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cleanup")
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument(
        "--mode",
        choices=["lists", "stream"],
        default="lists",
        help="lists: build every TagState first, then time plan(); stream: plan_repositories "
        "over a generator, so only one repository's input is alive at a time",
    )
    parser.add_argument("--tracemalloc", action="store_true", help="measure the planner's peak")
    args = parser.parse_args(argv)
    policies = load_policies(POLICIES)
    coverage = [(NOW - timedelta(days=500), NOW)]
    built = 0.0
    if args.mode == "lists":
        started = time.perf_counter()
        states: list[TagState] = []
        manifests: list[ManifestInfo] = []
        for repo in repositories(args.repos, args.tags):
            states.extend(repo.tags)
            manifests.extend(repo.manifests)
        built = time.perf_counter() - started
    gc.collect()
    rss_input = _rss_mib()
    if args.tracemalloc:
        tracemalloc.start()
    started = time.perf_counter()
    result: Plan
    if args.mode == "lists":
        result = plan(policies, states, manifests, coverage, NOW)
    else:
        result = plan_repositories(policies, repositories(args.repos, args.tags), coverage, NOW)
    elapsed = time.perf_counter() - started
    traced = tracemalloc.get_traced_memory()[1] / 2**20 if args.tracemalloc else None
    rss_peak = _rss_mib()
    counts = result.counts()
    label = "plan (s)" if args.mode == "lists" else "generate input + plan (s)"
    rows = [
        ("mode", args.mode),
        ("repositories x tags", f"{args.repos} x {args.tags} = {len(result.decisions):,}"),
        ("build input (s)", f"{built:.2f}" if args.mode == "lists" else "-"),
        (label, f"{elapsed:.2f}"),
        ("peak RSS before planning (MiB)", f"{rss_input:.0f}"),
        ("peak RSS after planning (MiB)", f"{rss_peak:.0f}"),
        ("planner peak allocation, tracemalloc (MiB)", f"{traced:.0f}" if traced else "-"),
        ("decisions", ", ".join(f"{k} {v:,}" for k, v in counts.items())),
        ("digest actions", f"{len(result.actions):,}"),
        ("bytes freed (est.)", f"{result.bytes_freed:,}"),
        ("load average (1 min)", f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"),
    ]
    print("| measure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
