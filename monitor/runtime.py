"""The resources a running registry-monitor shares, built by `monitor.main` and passed in."""

from __future__ import annotations

import dataclasses

import httpx
from sqlalchemy import Engine

from monitor.alerting.notifier import Notifier
from monitor.alerting.outbox import RetryPolicy
from monitor.alerting.throttle import Budget
from monitor.clock import Clock
from monitor.detect.engine import Detector
from monitor.observability.metrics import Metrics
from monitor.settings import Settings
from monitor.store.engine import SessionFactory
from monitor.store.writer import StoreWriter


@dataclasses.dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    session_factory: SessionFactory
    writer: StoreWriter
    metrics: Metrics
    clock: Clock
    replica: str
    detector: Detector
    notifier: Notifier | None = None
    budget: Budget = dataclasses.field(default_factory=Budget)
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    registry_debug: httpx.Client | None = None
