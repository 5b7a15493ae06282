"""Read requests are processed `http.read_slots` at a time: the others wait in a queue of
`http.read_queue` for at most `http.read_wait_seconds`; beyond that they are answered 503 with
Retry-After, counted in `registry_monitor_read_rejected_total` and never as a store error.
Notifications never wait for a read slot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from monitor.api.app import create_app
from monitor.api.readslots import ReadSlots
from monitor.main import build_services
from monitor.observability.metrics import STORE_OPERATIONS
from monitor.runtime import Services
from tests.conftest import make_settings
from tests.fixture_events import scenario_events
from tests.paths import fixtures

READ_TOKEN = "read-s3cret"
READS = ["/v1/tags", "/v1/events", "/v1/stats/daily?since=2026-11-26&until=2026-11-29"]


@pytest.fixture
def limited_services(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Services]:
    """A store holding the captured scenario, one read slot, the queue and wait of the test."""
    queue, wait = getattr(request, "param", (0, 10.0))
    settings = make_settings(
        db_url,
        tmp_path,
        REGISTRY_MONITOR_API_TOKEN=READ_TOKEN,
        REGISTRY_MONITOR_HTTP_READ_SLOTS="1",
        REGISTRY_MONITOR_HTTP_READ_QUEUE=str(queue),
        REGISTRY_MONITOR_HTTP_READ_WAIT_SECONDS=str(wait),
    )
    built = build_services(settings, registry=CollectorRegistry(), migrate=True)
    built.start()
    try:
        built.writer.submit(scenario_events()).result(timeout=30)
        yield built
    finally:
        built.stop()
        built.engine.dispose()


Scenario = Callable[[httpx.AsyncClient, ReadSlots], Awaitable[None]]


def run(services: Services, scenario: Scenario) -> None:
    app = create_app(services)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {READ_TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=headers
        ) as client:
            await scenario(client, app.state.read_slots)

    asyncio.run(main())


def rejected(services: Services, reason: str) -> float:
    value = services.metrics.registry.get_sample_value(
        "registry_monitor_read_rejected_total", {"reason": reason}
    )
    assert value is not None
    return value


def store_errors(services: Services) -> dict[str, float | None]:
    return {
        operation: services.metrics.registry.get_sample_value(
            "registry_monitor_store_errors_total", {"operation": operation}
        )
        for operation in STORE_OPERATIONS
    }


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait (bounded) until `condition` holds."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


class TestReadSlots:
    def test_within_the_slots_every_read_is_answered(self, limited_services: Services) -> None:
        """One slot, no queue: reads one after the other are all answered from the store."""
        answers: list[tuple[str, int, int]] = []

        async def scenario(client: httpx.AsyncClient, _slots: ReadSlots) -> None:
            for path in READS:
                answer = await client.get(path)
                answers.append((path, answer.status_code, len(answer.json()["items"]) > 0))

        run(limited_services, scenario)
        assert [(path, 200, True) for path in READS] == answers
        assert (0, 0) == (
            rejected(limited_services, "queue_full"),
            rejected(limited_services, "timeout"),
        )

    def test_a_read_beyond_the_queue_is_503_with_retry_after(
        self, limited_services: Services
    ) -> None:
        """With the only slot taken and no queue, each read is answered 503 busy at once with
        Retry-After, counted as queue_full; no store error is counted; once the slot is free
        the same read is answered."""
        before = store_errors(limited_services)
        refused: list[tuple[int, str | None, str]] = []
        after: list[int] = []

        async def scenario(client: httpx.AsyncClient, slots: ReadSlots) -> None:
            async with slots.slot():
                for path in READS:
                    answer = await client.get(path)
                    body = answer.json()["error"]["code"]
                    refused.append((answer.status_code, answer.headers.get("retry-after"), body))
            after.append((await client.get(READS[0])).status_code)

        run(limited_services, scenario)
        assert [(503, "1", "busy")] * len(READS) == refused
        assert ([200], float(len(READS))) == (after, rejected(limited_services, "queue_full"))
        assert before == store_errors(limited_services)

    @pytest.mark.parametrize("limited_services", [(1, 10.0)], indirect=True)
    def test_a_queued_read_is_answered_when_a_slot_frees(self, limited_services: Services) -> None:
        """One slot, a queue of one: a second read waits for the slot and is answered; a third
        finds the queue full and is refused."""
        results: list[int] = []

        async def scenario(client: httpx.AsyncClient, slots: ReadSlots) -> None:
            async with slots.slot():
                waiting = asyncio.create_task(client.get("/v1/tags"))
                await until(lambda: slots.waiting == 1)
                results.append((await client.get("/v1/tags")).status_code)
            results.append((await waiting).status_code)

        run(limited_services, scenario)
        assert [503, 200] == results
        assert (1, 0) == (
            rejected(limited_services, "queue_full"),
            rejected(limited_services, "timeout"),
        )

    @pytest.mark.parametrize("limited_services", [(4, 0.05)], indirect=True)
    def test_a_read_waiting_too_long_is_503(self, limited_services: Services) -> None:
        """A queued read still without a slot after `read_wait_seconds` is refused (timeout)."""
        answers: list[tuple[int, str | None]] = []

        async def scenario(client: httpx.AsyncClient, slots: ReadSlots) -> None:
            async with slots.slot():
                answer = await client.get("/v1/events")
                answers.append((answer.status_code, answer.headers.get("retry-after")))

        run(limited_services, scenario)
        assert [(503, "1")] == answers
        assert (0, 1) == (
            rejected(limited_services, "queue_full"),
            rejected(limited_services, "timeout"),
        )

    def test_a_read_without_the_token_takes_no_place(self, limited_services: Services) -> None:
        """With the slot taken, a read without the read token is still answered 401, not 503."""
        codes: list[int] = []

        async def scenario(client: httpx.AsyncClient, slots: ReadSlots) -> None:
            async with slots.slot():
                answer = await client.get("/v1/tags", headers={"Authorization": "Bearer wrong"})
                codes.append(answer.status_code)

        run(limited_services, scenario)
        assert ([401], 0) == (codes, rejected(limited_services, "queue_full"))

    def test_notifications_never_wait_for_a_read_slot(self, limited_services: Services) -> None:
        """With the only slot taken and no queue, a notification is still accepted and stored."""
        first = sorted((fixtures() / "notifications").glob("*.json"))[0]
        captured = json.loads(first.read_text())
        codes: list[int] = []

        async def scenario(client: httpx.AsyncClient, slots: ReadSlots) -> None:
            async with slots.slot():
                answer = await client.post(
                    "/v1/notifications",
                    content=json.dumps(captured["body"]),
                    headers={
                        "Authorization": "Bearer s3cret",
                        "Content-Type": "application/vnd.docker.distribution.events.v1+json",
                    },
                )
                codes.append(answer.status_code)

        run(limited_services, scenario)
        assert [200] == codes
        assert limited_services.applier.drain()
