"""monitor/observability/registry_debug.py: distribution 2.8's /debug/vars notification
counters, parsed from a captured body and read from the real registry binary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from monitor.errors import ConfigError, ParseError
from monitor.main import build_registry_debug
from monitor.observability.registry_debug import (
    EndpointQueue,
    RegistryDebugCollector,
    parse_debug_vars,
    status_code,
)
from monitor.settings import RegistrySettings, load_settings
from tests.harness import wait_until
from tests.registry_harness import free_port, registry_config, running_registry

# `docker-registry` 2.8.2+ds1 with two endpoints: `registry-monitor` answered 200 twice, then
# 503, then went away; `audit-archive` never listened.
CAPTURED = Path(__file__).resolve().parent / "data" / "debug-vars-2.8.2.json"

MONITOR_QUEUE = EndpointQueue(
    name="registry-monitor",
    pending=5,
    events=7,
    successes=2,
    failures=9,
    errors=3,
    statuses={"200": 2, "503": 9},
)
ARCHIVE_QUEUE = EndpointQueue(
    name="audit-archive",
    pending=7,
    events=7,
    successes=0,
    failures=0,
    errors=10,
    statuses={},
)


def captured() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(CAPTURED.read_bytes())
    return document


def with_endpoints(endpoints: Any) -> bytes:
    document = captured()
    document["registry"]["notifications"]["endpoints"] = endpoints
    return json.dumps(document).encode()


class TestStatusCode:
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            ("200 OK", "200"),
            ("503 Service Unavailable", "503"),
            ("401 Unauthorized", "401"),
            ("", "other"),
            ("teapot", "other"),
            ("2000 Big", "other"),
        ],
    )
    def test_code_of_an_expvar_status_key(self, status: str, expected: str) -> None:
        """The label is the three-digit code of the key, or `other`."""
        assert expected == status_code(status)


class TestParseDebugVars:
    def test_captured_body(self) -> None:
        """The captured 2.8.2 body gives both endpoints with their queue counters, in order."""
        assert (MONITOR_QUEUE, ARCHIVE_QUEUE) == parse_debug_vars(CAPTURED.read_bytes())

    def test_endpoints_are_capped(self) -> None:
        """At most `max_endpoints` endpoints are returned, the first ones."""
        assert (MONITOR_QUEUE,) == parse_debug_vars(CAPTURED.read_bytes(), max_endpoints=1)

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (json.dumps({"cmdline": ["x"], "memstats": {}}).encode(), ()),
            (json.dumps({"registry": {"notifications": {"endpoints": None}}}).encode(), ()),
            (with_endpoints([]), ()),
        ],
        ids=["no-registry-vars", "endpoints-null", "no-endpoints"],
    )
    def test_registry_without_endpoints(self, body: bytes, expected: tuple[()]) -> None:
        """A registry with no notification endpoints gives no queues."""
        assert expected == parse_debug_vars(body)

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b"<html>not expvar</html>", "invalid_json"),
            (b"[1, 2]", "invalid_debug_vars"),
            (with_endpoints({"name": "x"}), "invalid_debug_vars"),
            (with_endpoints([{"name": "x"}]), "invalid_debug_vars"),
            (with_endpoints([{"name": "x", "Metrics": {"Pending": -1}}]), "invalid_debug_vars"),
            (with_endpoints([{"name": "x", "Metrics": {"Events": "7"}}]), "invalid_debug_vars"),
            (with_endpoints([{"name": "x", "Metrics": {"Statuses": []}}]), "invalid_debug_vars"),
        ],
        ids=["html", "array", "endpoints-object", "no-metrics", "negative", "string", "statuses"],
    )
    def test_unusable_body_is_a_parse_error(self, body: bytes, reason: str) -> None:
        """A body that is not the expvar document raises ParseError with a stable reason."""
        with pytest.raises(ParseError) as caught:
            parse_debug_vars(body)
        assert reason == caught.value.reason

    @given(st.binary(max_size=200))
    def test_any_bytes_parse_or_raise_parse_error(self, body: bytes) -> None:
        """Whatever the listener answers, parsing returns queues or raises ParseError only."""
        try:
            result = parse_debug_vars(body)
        except ParseError:
            return
        assert isinstance(result, tuple)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def collector_registry(handler: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    client = httpx.Client(transport=httpx.MockTransport(handler), timeout=2)
    registry.register(RegistryDebugCollector(client, "http://127.0.0.1:5001/"))
    return registry


class TestRegistryDebugCollector:
    def test_exports_the_captured_queues(self) -> None:
        """At a scrape the captured body becomes pending, events by type and status by code."""
        body = CAPTURED.read_bytes()
        registry = collector_registry(lambda _request: httpx.Response(200, content=body))
        p = "registry_monitor_registry_"
        monitor, archive = (("endpoint", "registry-monitor"),), (("endpoint", "audit-archive"),)
        expected = {
            (f"{p}debug_up", ()): 1.0,
            (f"{p}notifications_pending", monitor): 5.0,
            (f"{p}notifications_pending", archive): 7.0,
            (f"{p}notifications_status_total", (("code", "200"), *monitor)): 2.0,
            (f"{p}notifications_status_total", (("code", "503"), *monitor)): 9.0,
        }
        for endpoint, queue in ((monitor, MONITOR_QUEUE), (archive, ARCHIVE_QUEUE)):
            for kind, value in queue.counts().items():
                expected[(f"{p}notifications_events_total", (*endpoint, ("type", kind)))] = value
        assert expected == samples(registry)

    def test_reads_debug_vars_of_the_base_url(self) -> None:
        """The request goes to `<debug_url>/debug/vars`."""
        seen: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(str(request.url))
            return httpx.Response(200, content=CAPTURED.read_bytes())

        samples(collector_registry(handler))
        assert ["http://127.0.0.1:5001/debug/vars"] == seen

    @pytest.mark.parametrize(
        "answer",
        [
            lambda _r: httpx.Response(404, text="404 page not found"),
            lambda _r: httpx.Response(200, text="<html>"),
            lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)),
            lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow", request=r)),
        ],
        ids=["404", "not-json", "refused", "timeout"],
    )
    def test_unavailable_registry_exports_only_up_zero(self, answer: Any) -> None:
        """Whatever goes wrong, the scrape succeeds with debug_up 0 and no queue samples."""
        expected = {("registry_monitor_registry_debug_up", ()): 0.0}
        assert expected == samples(collector_registry(answer))


class TestRegistrySettings:
    def test_from_the_environment(self) -> None:
        """REGISTRY_MONITOR_REGISTRY_DEBUG_URL sets registry.debug_url; the timeout defaults to 2 s."""
        settings = load_settings(
            {
                "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": "t",
                "REGISTRY_MONITOR_REGISTRY_DEBUG_URL": "http://registry:5001",
            }
        ).registry
        expected = ("http://registry:5001", 2.0, 16)
        assert expected == (
            settings.debug_url,
            settings.debug_timeout_seconds,
            settings.debug_max_endpoints,
        )

    @pytest.mark.parametrize(
        ("env", "key"),
        [
            ({"REGISTRY_MONITOR_REGISTRY_DEBUG_URL": "registry:5001"}, "registry.debug_url"),
            (
                {"REGISTRY_MONITOR_REGISTRY_DEBUG_TIMEOUT_SECONDS": "0"},
                "registry.debug_timeout_seconds",
            ),
            (
                {"REGISTRY_MONITOR_REGISTRY_DEBUG_MAX_ENDPOINTS": "0"},
                "registry.debug_max_endpoints",
            ),
        ],
    )
    def test_invalid_values_name_the_key(self, env: dict[str, str], key: str) -> None:
        """A URL without scheme, a zero timeout or a zero endpoint cap stops with the key."""
        with pytest.raises(ConfigError) as caught:
            load_settings(env)
        assert key == caught.value.key

    def test_unset_builds_no_client(self) -> None:
        """Without debug_url there is no client and no collector."""
        registry = CollectorRegistry()
        expected = (None, None)
        actual = (
            build_registry_debug(RegistrySettings(), registry),
            registry.get_sample_value("registry_monitor_registry_debug_up"),
        )
        assert expected == actual


def push_blob(registry_url: str, data: bytes) -> None:
    """A monolithic blob upload (one push event for every endpoint)."""
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = httpx.post(f"{registry_url}/v2/bridge/test/blobs/uploads/", timeout=10)
    assert 202 == started.status_code, started.text
    location = httpx.URL(registry_url).join(started.headers["Location"])
    done = httpx.put(
        location.copy_merge_params({"digest": digest}),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert 201 == done.status_code, done.text


@pytest.mark.registry
class TestAgainstTheRegistry:
    def test_pending_grows_while_the_endpoint_is_down(self, tmp_path: Path) -> None:
        """With its only endpoint refusing connections, the real registry's queue grows with
        each push, and the bridge wired from the settings exports it (debug_up 1)."""
        port, debug_port, down_port = free_port(), free_port(), free_port()
        config = registry_config(
            root=tmp_path / "registry",
            port=port,
            notifications={
                "endpoints": [
                    {
                        "name": "registry-monitor",
                        "url": f"http://127.0.0.1:{down_port}/v1/notifications",
                        "timeout": "500ms",
                        "threshold": 3,
                        "backoff": "1s",
                    }
                ]
            },
        )
        config["http"]["debug"] = {"addr": f"127.0.0.1:{debug_port}"}
        registry = CollectorRegistry()
        client = build_registry_debug(
            RegistrySettings(debug_url=f"http://127.0.0.1:{debug_port}"), registry
        )
        assert client is not None
        labels = {"endpoint": "registry-monitor"}

        def pending() -> float | None:
            return registry.get_sample_value(
                "registry_monitor_registry_notifications_pending", labels
            )

        try:
            with running_registry(directory=tmp_path / "registry", config=config) as handle:
                wait_until(lambda: pending() == 0.0, timeout=15, what="the debug listener")
                push_blob(handle.url, b"first")
                wait_until(lambda: (pending() or 0) >= 1, timeout=15, what="one pending event")
                first = pending() or 0.0
                push_blob(handle.url, b"second")
                push_blob(handle.url, b"third")
                wait_until(
                    lambda: (pending() or 0) >= first + 2, timeout=15, what="the queue to grow"
                )
                events = registry.get_sample_value(
                    "registry_monitor_registry_notifications_events_total",
                    {**labels, "type": "events"},
                )
                errors = registry.get_sample_value(
                    "registry_monitor_registry_notifications_events_total",
                    {**labels, "type": "errors"},
                )
                up = registry.get_sample_value("registry_monitor_registry_debug_up")
            after = registry.get_sample_value("registry_monitor_registry_debug_up")
        finally:
            client.close()
        expected = (3.0, True, 1.0, 0.0)
        assert expected == (events, (errors or 0) >= 1, up, after)
