"""The resources a running registry-monitor shares, built by `monitor.main` and passed in."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import httpx
from sqlalchemy import Engine

from monitor.alerting.notifier import Notifier
from monitor.alerting.outbox import RetryPolicy
from monitor.alerting.throttle import Budget
from monitor.clock import Clock
from monitor.detect.engine import Detector
from monitor.observability.collectors import TagGauges
from monitor.observability.metrics import Metrics
from monitor.pipeline.applier import Applier
from monitor.settings import Settings
from monitor.store.engine import SessionFactory
from monitor.store.inbox import Inbox
from monitor.store.writer import StoreWriter


class ReadContext(Protocol):
    """What the read API uses: `Services` in `serve`, `ReadServices` in its read process."""

    @property
    def settings(self) -> Settings: ...

    @property
    def session_factory(self) -> SessionFactory: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def clock(self) -> Clock: ...


@dataclasses.dataclass(frozen=True)
class ReadServices:
    """The resources of the read API's own process (monitor/api/read_child.py)."""

    settings: Settings
    session_factory: SessionFactory
    metrics: Metrics
    clock: Clock


@dataclasses.dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    session_factory: SessionFactory
    writer: StoreWriter
    inbox: Inbox
    applier: Applier
    metrics: Metrics
    clock: Clock
    replica: str
    detector: Detector
    notifier: Notifier | None = None
    budget: Budget = dataclasses.field(default_factory=Budget)
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    registry_debug: httpx.Client | None = None
    tag_gauges: TagGauges | None = None  # the tag gauges' counts, refreshed by `serve`'s job

    def start(self) -> None:
        """Starts the store writer, opens the intake inbox and starts its applier (each once)."""
        self.writer.start()
        self.inbox.open()
        self.applier.start()

    def stop(self) -> None:
        """Applies what the inbox holds (for a bounded time; the rest waits in the inbox for the
        next start), then stops the applier, closes the inbox and stops the writer. Call it once
        no request is being answered."""
        self.applier.stop()
        self.inbox.close()
        self.writer.stop()
