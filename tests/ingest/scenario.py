"""The real distribution 2.8 capture (`tests/fixtures/distribution-2.8`), read in place."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from tests.paths import fixture_file

LOG_FILES = ("registry-text.log", "registry-json.log")


def scenario_file(name: str) -> Path:
    """A file of the 2.8 capture; a missing file is a failure, never a skip."""
    return fixture_file(name)


@cache
def log_lines(name: str) -> tuple[str, ...]:
    """The lines of one captured registry log, without line breaks."""
    return tuple(scenario_file(name).read_text(encoding="utf-8").splitlines())


@cache
def expected() -> dict[str, Any]:
    """The scenario's machine-readable facts (`expected.json`)."""
    result: dict[str, Any] = json.loads(scenario_file("expected.json").read_text(encoding="utf-8"))
    return result


def expected_log(name: str) -> dict[str, Any]:
    """The `registry_text_log` or `registry_json_log` section for a log file name."""
    section = "registry_text_log" if "text" in name else "registry_json_log"
    result: dict[str, Any] = expected()[section]
    return result
