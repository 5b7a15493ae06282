from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.paths import REGISTRY3_ENV, registry3_binary
from tests.registry_harness import (
    PORT_RANGE,
    ToolMissing,
    build_oci_layout,
    free_port,
    port_slice,
    registry_config,
    require_tools,
    running_registry,
)


class TestFreePort:
    def test_two_workers_never_hand_out_the_same_port(self) -> None:
        """Under pytest-xdist each worker draws from a slice of its own, below the kernel's
        ephemeral ports (32768 and up), so no outgoing connection takes one either."""
        first, second = port_slice("gw0", 2), port_slice("gw1", 2)
        assert (set(), 2 * len(first), True) == (
            set(first) & set(second),
            len(first) + len(second),
            PORT_RANGE.start <= first.start and second.stop <= min(32768, PORT_RANGE.stop),
        )

    def test_a_port_is_not_handed_out_twice(self) -> None:
        """Ports taken one after the other (a registry's and its debug server's) differ."""
        taken = [free_port() for _ in range(20)]
        assert (20, True) == (
            len(set(taken)),
            all(PORT_RANGE.start <= p < PORT_RANGE.stop for p in taken),
        )


class TestRunningRegistry:
    @pytest.mark.registry
    def test_serves_then_always_stops(self, tmp_path: Path) -> None:
        """The registry answers /v2/ while running and its process has ended afterwards."""
        config = registry_config(root=tmp_path, port=free_port())
        with running_registry(directory=tmp_path / "r", config=config) as registry:
            status = httpx.get(f"{registry.url}/v2/", timeout=5).status_code
        expected = (200, True)
        assert expected == (status, registry.process.poll() is not None)

    @pytest.mark.registry
    def test_stops_when_the_body_raises(self, tmp_path: Path) -> None:
        """An exception inside the block still terminates the registry."""
        config = registry_config(root=tmp_path, port=free_port())
        handles = []
        with (
            pytest.raises(RuntimeError, match="boom"),
            running_registry(directory=tmp_path / "r", config=config) as registry,
        ):
            handles.append(registry)
            raise RuntimeError("boom")
        assert handles[0].process.poll() is not None


class TestRegistry3:
    @pytest.mark.registry
    def test_the_binary_is_distribution_v3_1_1(self) -> None:
        """REGISTRY_MONITOR_TEST_REGISTRY3 names the upstream v3.1.1 registry."""
        out = subprocess.run(
            [registry3_binary(), "--version"], capture_output=True, text=True, timeout=30
        )
        assert (0, "github.com/distribution/distribution/v3 v3.1.1") == (
            out.returncode,
            out.stdout.split(" ", 1)[1].strip(),
        )

    @pytest.mark.registry
    def test_serves_through_the_harness(self, tmp_path: Path) -> None:
        """The 3.x binary runs under `running_registry` with the same config as 2.8."""
        config = registry_config(root=tmp_path, port=free_port())
        with running_registry(
            directory=tmp_path / "r", config=config, binary=registry3_binary()
        ) as registry:
            response = httpx.get(f"{registry.url}/v2/", timeout=5)
        assert (200, "registry/2.0") == (
            response.status_code,
            response.headers["docker-distribution-api-version"],
        )

    def test_unset_variable_fails_saying_how_to_build_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the variable the helper fails (never skips) and says how to get the binary."""
        monkeypatch.delenv(REGISTRY3_ENV, raising=False)
        with pytest.raises(AssertionError) as failure:
            registry3_binary()
        message = str(failure.value)
        assert [True, True, True] == [
            f"{REGISTRY3_ENV} is not set" in message,
            "v3.1.1" in message,
            "CGO_ENABLED=0 go build" in message,
        ]

    def test_a_missing_file_fails_naming_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A variable naming no executable fails with the path it was given."""
        monkeypatch.setenv(REGISTRY3_ENV, str(tmp_path / "nothing"))
        with pytest.raises(AssertionError, match=f"{REGISTRY3_ENV}={tmp_path}/nothing is not an"):
            registry3_binary()


class TestRequireTools:
    def test_missing_tool_fails_loudly(self) -> None:
        """A missing program raises ToolMissing naming it, never a silent skip."""
        with pytest.raises(ToolMissing, match="no-such-tool-xyz"):
            require_tools("no-such-tool-xyz")


class TestBuildOciLayout:
    def test_deterministic_digests(self, tmp_path: Path) -> None:
        """The same spec gives the same digests in two directories."""
        spec = {"a": [{"a.txt": "a\n"}]}
        indexes = {"multi": [("amd64", "a"), ("arm64", "a")]}
        first = build_oci_layout(directory=tmp_path / "1", images=spec, indexes=indexes)
        second = build_oci_layout(directory=tmp_path / "2", images=spec, indexes=indexes)
        assert first == second
