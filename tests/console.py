"""Run the installed `registry-monitor` console script as a user would: a real process, in a
folder of the test's choosing, with only the settings the test gives it."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.harness import wait_for_port
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


@dataclasses.dataclass
class Served:
    """A `registry-monitor serve` process started by `serving`; its stderr goes to `log`."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serving(
    *, cwd: Path, port: int, env: Mapping[str, str], timeout: float = 60.0
) -> Iterator[Served]:
    """`registry-monitor serve` (the console script) on 127.0.0.1:`port` in `cwd`, with `env`;
    yielded once it accepts connections, always stopped (SIGTERM, then kill) afterwards."""
    log = cwd / f"serve-{port}.log"
    environ = console_environment({"REGISTRY_MONITOR_HTTP_ADDR": f"127.0.0.1:{port}", **env})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(console_script()), "serve"], cwd=cwd, env=environ, stdout=out, stderr=out
        )
    try:
        try:
            wait_for_port(port, timeout=timeout, process=process)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}; its log:\n{log.read_text(errors='replace')}") from None
        yield Served(f"http://127.0.0.1:{port}", process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
