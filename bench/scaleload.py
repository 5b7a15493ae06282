"""Load for bench/scale.py: servers in their own processes, wrk with Lua scripts that make every
request a fresh real event from the captures, readers, and the RSS of the server.

wrk (apt-get install wrk) reports its latency histogram from `done()` as one JSON line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CAPTURES = [REPO / "tests/fixtures/distribution-2.8", REPO / "tests/fixtures/distribution-3.1"]
TOKEN = "bench"  # noqa: S105 (the token the benchmark configures)
MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"

BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def receive(request):
    await request.body()
    return JSONResponse({"accepted": 1})

app = Starlette(routes=[Route("/v1/notifications", receive, methods=["POST"])])
"""

# wrk's summary as one JSON line, from `done()`.
_DONE_LUA = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""

# Each wrk thread has its own Lua state: `setup` numbers the threads, `init` loads the bodies.
INTAKE_LUA = (
    """
local counter = 0
local templates = {}
local nonce, token = "", ""
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end
function init(args)
  nonce, token = args[1], args[2]
  local f = assert(io.open(args[3], "r"))
  for line in f:lines() do
    if #line > 0 then table.insert(templates, line) end
  end
  f:close()
end
function request()
  counter = counter + 1
  local body = templates[(counter % #templates) + 1]
  local id = nonce .. "-" .. tid .. "-" .. counter
  local sent = os.date("!%Y-%m-%dT%H:%M:%S") .. string.format(".%06dZ", counter % 1000000)
  body = string.gsub(string.gsub(body, "__ID__", id), "__TIME__", sent)
  return wrk.format("POST", "/v1/notifications", {
    ["Content-Type"] = "%(media_type)s",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
"""
    + _DONE_LUA
)

READERS_LUA = (
    """
local counter = 0
local token = ""
function init(args) token = args[1] end
function request()
  counter = counter + 1
  local path = "/v1/tags?limit=1000"
  if counter % 2 == 0 then path = "/v1/stats/daily?limit=1000" end
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
end
"""
    + _DONE_LUA
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def family(pid: int) -> list[int]:
    """`pid` and its descendants (`serve`'s fork server and the intake applier it forks)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(parent, []).append(int(entry.name))
    pids = [pid]
    for one in pids:  # grows while walked: breadth first
        pids.extend(parents.get(one, []))
    return pids


def status_kib(pid: int, field: str = "VmRSS") -> int:
    """A field of /proc/PID/status, summed over `pid` and its children (VmHWM: the sum of
    each process's own peak, an upper bound of their peak together)."""
    total = 0
    for one in family(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
    return total


def pss_kib(pid: int, *, alone: bool = False) -> int:
    """Proportional set size of `pid` and its children (of `pid` alone with `alone`): the pages
    the processes share (the interpreter, extension modules) counted once in all, not once in
    each."""
    total = 0
    for one in [pid] if alone else family(pid):
        with contextlib.suppress(OSError, KeyError, ValueError):
            total += rollup_kib(one)["Pss"]
    return total


def rollup_kib(pid: int) -> dict[str, int]:
    """The sizes of /proc/PID/smaps_rollup in KiB, by name (`Rss`, `Pss`, …); OSError when the
    process ended."""
    sizes = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        fields = value.split()
        if len(fields) == 2 and fields[1] == "kB":
            sizes[key] = int(fields[0])
    return sizes


ROLES = {0: "serve", 10: "applier", 15: "reads"}
"""A process of `serve`'s family by its niceness (`monitor/children.py`): the applier's process
runs at 10 (as does a scheduled plan's, not running in these benchmarks), the read process at
15."""


@dataclasses.dataclass(frozen=True)
class Member:
    """One process of a server's family, as `members` read it."""

    pid: int
    role: str
    rss_kib: int
    pss_kib: int


def members(pid: int) -> list[Member]:
    """`pid` and its descendants, each read once: its role (`pid` itself is "serve", the others
    by `ROLES`, else by pid), resident and proportional set sizes (`smaps_rollup`). A process
    that ended meanwhile is left out."""
    out = []
    for one in family(pid):
        with contextlib.suppress(OSError, IndexError, KeyError, ValueError):
            nice = int(Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()[16])
            sizes = rollup_kib(one)
            role = "serve" if one == pid else ROLES.get(nice, str(one))
            out.append(Member(one, role, sizes["Rss"], sizes["Pss"]))
    return out


def pss_by_role(pid: int) -> dict[str, float]:
    """PSS in MiB of each process of `pid`'s family, by role (`ROLES`; others by pid)."""
    out: dict[str, float] = {}
    for member in members(pid):
        out[member.role] = out.get(member.role, 0.0) + member.pss_kib / 1024
    return out


# --- request bodies -----------------------------------------------------------------------


def _captured() -> list[dict[str, Any]]:
    bodies = []
    for capture in CAPTURES:
        for path in sorted((capture / "notifications").glob("*.json")):
            bodies.append(json.loads(path.read_text())["body"])
    if not bodies:
        raise RuntimeError("no captures in tests/fixtures")
    return bodies


def _with_placeholders(body: dict[str, Any]) -> str:
    """The body as a template: each event's id and request id become new per request, and its
    time the time it is sent (`fill`, or the Lua script), as a registry's events are: a
    replayed capture's times and request ids would put every insert into the store's
    time-keyed and request-id indexes at the same few places."""
    for n, event in enumerate(body["events"]):
        event["id"] = f"__ID__-{n}"
        event["timestamp"] = "__TIME__"
        if isinstance(event.get("request"), dict):
            event["request"]["id"] = f"__ID__-{n}-request"
    return json.dumps(body, separators=(",", ":"))


def fill(template: str, event_id: str, now: datetime) -> str:
    """A template of `mixed_bodies` or `push_bodies` made into a body sent at `now`."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return template.replace("__ID__", event_id).replace("__TIME__", stamp)


def mixed_bodies() -> list[str]:
    """Every captured notification (pushes, pulls, mounts, deletes; 2.8 and 3.1)."""
    return [_with_placeholders(b) for b in _captured()]


def push_bodies(repository: str) -> list[str]:
    """The captured image manifest pushes, moved to `repository`, each to a tag of its own."""
    out = []
    for body in _captured():
        event = body["events"][0]
        target = event["target"]
        if event["action"] != "push" or "/manifests/" not in target.get("url", ""):
            continue
        if "index" in target.get("mediaType", "") or "list" in target.get("mediaType", ""):
            continue
        target["repository"] = repository
        target["tag"] = "bench-__ID__"
        target["url"] = target["url"].replace("/v2/", "/v2/" + repository + "/x/", 1)
        out.append(_with_placeholders(body))
    return out


# --- servers ------------------------------------------------------------------------------


@dataclasses.dataclass
class Running:
    url: str
    pid: int
    peak_rss_mib: float = 0.0
    peak_pss_mib: float = 0.0  # the pages the processes share counted once (see pss_kib)
    peak_serve_pss_mib: float = 0.0  # `serve`'s own share, without its children
    peak_pss_by_role: dict[str, float] = dataclasses.field(default_factory=dict)
    """Each process's own peak PSS (see `pss_by_role`); peaks of different moments."""

    def roles_note(self) -> str:
        return ", ".join(f"{role} {mib:.0f}" for role, mib in self.peak_pss_by_role.items())


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited during start ({process.returncode})")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("server did not start")


SAMPLE_SECONDS = 1.0
"""How often `server` samples the family's memory: each sample walks /proc and reads each
process's `smaps_rollup` once. Every 0.25 s, reading them once per figure, the benchmark's own
process took 1.1-1.3 s of CPU in 12 s (of the 2 cores the server runs on); the family's memory
moves over seconds (the detection catch-up's growth stays)."""


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[Running]:
    """Run a server process; samples its family's RSS and PSS every `SAMPLE_SECONDS` while it
    runs."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    running = Running(f"http://127.0.0.1:{port}", process.pid)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            family = members(process.pid)
            if not family:
                continue
            rss = sum(m.rss_kib for m in family) / 1024
            pss = sum(m.pss_kib for m in family) / 1024
            running.peak_rss_mib = max(running.peak_rss_mib, rss)
            running.peak_pss_mib = max(running.peak_pss_mib, pss)
            peaks = running.peak_pss_by_role
            for member in family:
                mib = member.pss_kib / 1024
                if member.pid == process.pid:
                    running.peak_serve_pss_mib = max(running.peak_serve_pss_mib, mib)
                peaks[member.role] = max(peaks.get(member.role, 0.0), mib)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        _wait_for_port(port, process)
        sampler.start()
        yield running
    finally:
        stop.set()
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def bare_command(app_dir: Path, port: int, *, loop: str, http: str) -> list[str]:
    (app_dir / "bare_app.py").write_text(BARE_APP)
    return [
        sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--port", str(port),
        "--log-level", "warning", "--no-access-log", "--loop", loop, "--http", http,
        "bare_app:app",
    ]  # fmt: skip


def monitor_env(url: str, port: int, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_MONITOR_")}
    env.update(
        {
            "REGISTRY_MONITOR_DATABASE_URL": url,
            "REGISTRY_MONITOR_HTTP_ADDR": f"127.0.0.1:{port}",
            "REGISTRY_MONITOR_NOTIFICATIONS_TOKENS": TOKEN,
            "REGISTRY_MONITOR_API_TOKEN": TOKEN,
            "REGISTRY_MONITOR_LOGGING_LEVEL": "warning",
            "REGISTRY_MONITOR_RETENTION_SCHEDULE": "",
        }
    )
    env.update({f"REGISTRY_MONITOR_{k.upper()}": v for k, v in settings.items()})
    return env


# --- wrk ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _parse(output: str) -> WrkResult:
    line = next(x for x in reversed(output.splitlines()) if x.startswith("{"))
    raw = json.loads(line)
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        status_errors=raw["status_errors"],
        socket_errors=raw["socket_errors"],
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )


def _scripts(work: Path, bodies: list[str]) -> tuple[Path, Path]:
    script = work / "intake.lua"
    script.write_text(INTAKE_LUA.replace("%(media_type)s", MEDIA_TYPE))
    data = work / f"bodies-{abs(hash(tuple(bodies)))}.txt"
    data.write_text("\n".join(bodies) + "\n")
    return script, data


def wrk_intake(
    url: str, bodies: list[str], *, connections: int, seconds: float, work: Path
) -> WrkResult:
    """POST fresh events for `seconds` from `connections` keep-alive connections."""
    script, data = _scripts(work, bodies)
    threads = 1 if connections == 1 else 2
    nonce = f"{os.getpid():x}{time.time_ns():x}"
    command = [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
        "--timeout", "30s", "-s", str(script), url, "--", nonce, TOKEN, str(data),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr[-500:]}")
    return _parse(done.stdout)


@contextlib.contextmanager
def wrk_intake_until_stopped(
    url: str, bodies: list[str], *, connections: int, work: Path, limit_seconds: float = 900
) -> Iterator[list[WrkResult]]:
    """POST fresh events until the block ends (wrk stops on SIGINT and reports)."""
    script, data = _scripts(work, bodies)
    nonce = f"{os.getpid():x}{time.time_ns():x}"
    command = [
        "wrk", "-t", "1", "-c", str(connections), "-d", f"{limit_seconds:g}s",
        "--timeout", "30s", "-s", str(script), url, "--", nonce, TOKEN, str(data),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[WrkResult] = []
    try:
        yield out
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        if "{" not in stdout:
            raise RuntimeError(f"wrk reported nothing: {stderr[-500:]}")
        out.append(_parse(stdout))


@contextlib.contextmanager
def readers(
    url: str, *, connections: int = 8, limit_seconds: float = 900
) -> Iterator[list[WrkResult]]:
    """`connections` clients reading /v1/tags and /v1/stats/daily back to back; the list holds
    their wrk summary once the block ends (non-2xx answers are its status errors)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "readers.lua"
        script.write_text(READERS_LUA)
        command = [
            "wrk", "-t", "1", "-c", str(connections), "-d", f"{limit_seconds:g}s",
            "--timeout", "60s", "-s", str(script), url, "--", TOKEN,
        ]  # fmt: skip
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        out: list[WrkResult] = []
        try:
            yield out
        finally:
            process.send_signal(signal.SIGINT)
            stdout, _ = process.communicate(timeout=60)
            if "{" in stdout:
                out.append(_parse(stdout))
