from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.registry_harness import (
    ToolMissing,
    build_oci_layout,
    free_port,
    registry_config,
    require_tools,
    running_registry,
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
