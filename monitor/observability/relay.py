"""Metrics updated in a child process, replayed into the parent's registry.

The intake applier runs in a process of its own (monitor/pipeline/applier_process.py) with the
same store writer as in-process, which counts what it stores through `Metrics`. There, `Metrics`
is made of relays: each `inc`/`observe`/`set` is recorded as a small tuple, the tuples go to
the parent with each applied batch, and the parent replays them on its own metrics, so
`/metrics` shows one process's counts whichever process did the work.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from monitor.observability.metrics import Metrics

# (field of Metrics, sorted label pairs, method, value)
Op = tuple[str, tuple[tuple[str, str], ...], str, float]

METHODS = frozenset({"inc", "observe", "set"})  # all the writer, applier and detection call
FIELDS = frozenset(f.name for f in dataclasses.fields(Metrics) if f.name != "registry")


class _Relay:
    __slots__ = ("_labels", "_name", "_ops")

    def __init__(self, name: str, ops: deque[Op], labels: tuple[tuple[str, str], ...] = ()):
        self._name = name
        self._ops = ops
        self._labels = labels

    def labels(self, **labels: str) -> _Relay:
        return _Relay(self._name, self._ops, tuple(sorted(labels.items())))

    def inc(self, amount: float = 1.0) -> None:
        self._ops.append((self._name, self._labels, "inc", amount))

    def observe(self, amount: float) -> None:
        self._ops.append((self._name, self._labels, "observe", amount))

    def set(self, value: float) -> None:
        self._ops.append((self._name, self._labels, "set", value))


def relay_metrics(ops: deque[Op]) -> Metrics:
    """A `Metrics` whose every update is appended to `ops` (thread-safe: deque appends)."""
    fields: dict[str, Any] = {name: _Relay(name, ops) for name in FIELDS}
    return Metrics(registry=CollectorRegistry(), **fields)


def take(ops: deque[Op]) -> list[Op]:
    """Everything recorded so far, removed from `ops` (other threads may keep appending), with
    the increments of each metric and labels summed: replaying costs the parent a few calls per
    batch, not one per event."""
    increments: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    out: list[Op] = []
    while True:
        try:
            op = ops.popleft()
        except IndexError:
            break
        name, labels, method, value = op
        if method == "inc":
            key = (name, labels)
            increments[key] = increments.get(key, 0.0) + value
        else:
            out.append(op)
    return [(name, labels, "inc", value) for (name, labels), value in increments.items()] + out


def replay(metrics: Metrics, ops: Iterable[Op]) -> None:
    """Applies recorded updates to `metrics`; anything that names no metric is ignored."""
    for name, labels, method, value in ops:
        if name not in FIELDS or method not in METHODS:
            continue
        metric: Any = getattr(metrics, name)
        if labels:
            metric = metric.labels(**dict(labels))
        getattr(metric, method)(value)
