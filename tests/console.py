"""Run the installed `registry-monitor` console script as a user would: a real process, in a
folder of the test's choosing, with only the settings the test gives it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.paths import REPO


def console_script() -> Path:
    """The `registry-monitor` script installed beside this interpreter (`.venv/bin`)."""
    path = Path(sys.executable).with_name("registry-monitor")
    if not path.is_file():
        raise AssertionError(
            f"the console script is not installed at {path}: run scripts/test (it installs "
            f"the project with `pip install -e {REPO}`)"
        )
    return path


def console_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any REGISTRY_MONITOR_* variable, plus `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_MONITOR_")}
    return {**clean, **(env or {})}


def run_console(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """`registry-monitor ARGS…` run to its end in `cwd`; stdout and stderr captured as text."""
    return subprocess.run(
        [str(console_script()), *args],
        cwd=cwd,
        env=console_environment(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
