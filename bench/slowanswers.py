"""Intake's slow answers as `serve` counted them: over 50 and over 100 ms in
`registry_monitor_intake_latency_seconds`, and how many of those waits were the durable commit
of the body to the intake inbox (`registry_monitor_intake_inbox_seconds`), from its `/metrics`
before and after a measurement.

Every answer's inbox wait is part of that answer, so an answer over 100 ms whose commit took
over 100 ms waited for the store (the disk's sync, a lock); the answers over 100 ms beyond the
commits over 100 ms are the process's own (its event loop, a core it waited for). `serve` times
an answer from its handler's start, so the event loop's delay before the handler, which wrk
sees, is in neither. Commits the inbox tried again (`registry_monitor_intake_inbox_retries_total`:
a file that refused them as locked, a PostgreSQL connection replaced) are counted beside them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import httpx

from bench.scaleload import TOKEN

ANSWERS = "registry_monitor_intake_latency_seconds"
INBOX = "registry_monitor_intake_inbox_seconds"
RETRIES = "registry_monitor_intake_inbox_retries_total"
LIMITS = ("0.05", "0.1")


@dataclasses.dataclass(frozen=True)
class Slow:
    answers: int
    over_50: int
    over_100: int
    inbox_over_50: int
    inbox_over_100: int
    retries: int = 0  # inbox commits tried again, any reason

    def brief(self) -> str:
        """`answers over 50 / 100 ms (of them, inbox commits over 50 / 100 ms)`."""
        return (
            f"{self.over_50:,} / {self.over_100:,} "
            f"({self.inbox_over_50:,} / {self.inbox_over_100:,})"
        )


def counts(text: str) -> dict[str, float]:
    """`name:le` (and `name:count`) of the two histograms, and the inbox's retries summed over
    their reasons, from a Prometheus text scrape."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{RETRIES}{{"):
            found[RETRIES] = found.get(RETRIES, 0.0) + float(line.split()[-1])
        for name in (ANSWERS, INBOX):
            if line.startswith(f"{name}_count "):
                found[f"{name}:count"] = float(line.split()[1])
            for le in LIMITS:
                if line.startswith(f'{name}_bucket{{le="{le}"}} '):
                    found[f"{name}:{le}"] = float(line.split()[1])
    return found


def scrape(url: str) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return counts(httpx.get(f"{url}/metrics", headers=headers, timeout=30).text)


def between(before: dict[str, float], after: dict[str, float]) -> Slow:
    def moved(key: str) -> int:
        return int(after.get(key, 0.0) - before.get(key, 0.0))

    def over(name: str, le: str) -> int:
        return moved(f"{name}:count") - moved(f"{name}:{le}")

    return Slow(
        answers=moved(f"{ANSWERS}:count"),
        over_50=over(ANSWERS, "0.05"),
        over_100=over(ANSWERS, "0.1"),
        inbox_over_50=over(INBOX, "0.05"),
        inbox_over_100=over(INBOX, "0.1"),
        retries=moved(RETRIES),
    )


@contextlib.contextmanager
def slow_answers(url: str) -> Iterator[list[Slow]]:
    """Yields a list that holds, once the block ends, what `serve` at `url` counted in it."""
    found: list[Slow] = []
    before = scrape(url)
    yield found
    found.append(between(before, scrape(url)))
