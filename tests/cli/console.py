"""Running the installed `registry-monitor` console script as a user does: a new process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "registry-monitor"


def run(
    *argv: str, cwd: Path, env: dict[str, str] | None = None, stdout: int | None = None
) -> subprocess.CompletedProcess[str]:
    """The console script with only PATH and `env` in its environment."""
    return subprocess.run(
        [str(SCRIPT), *argv],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
