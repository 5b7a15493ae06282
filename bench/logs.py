"""Registry log ingest throughput: `python -m bench.logs [--lines N] [--formatter text|json]`.

Builds N realistic lines by replaying the real 2.8 capture (new request ids, client addresses and
ports, times moving forward), writes them to a temporary file, and measures on that file:

- `feed`: `LogClassifier.feed` on every line (the ingest path), lines already in memory;
- `read_lines + feed`: the same, reading and decoding the file with `tailer.read_lines`;
- `parse_line + consume`: the full parse of every line, then classification;
- a bare compiled-regex loop: one `match` per line (the access-line regex, or the logrus
  head regex), no field extraction: the floor for any regex-based Python parser;
- `goaccess --log-format=COMBINED` over the combined-format lines of the same file.

Prints a markdown table. Each figure is the best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.ingest.logclassify import LogClassifier
from monitor.ingest.logline import parse_line
from monitor.ingest.tailer import read_lines
from tests.paths import FIXTURES

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ADDR = re.compile(r'(remoteaddr"?[=:]"?)127\.0\.0\.1:\d+|^127\.0\.0\.1(?= )')
_START = datetime(2026, 11, 27, 4, 50, tzinfo=UTC)
_RFC3339 = re.compile(r"2026-11-27T04:5(\d):(\d\d)\.(\d+)Z")
_CLF = re.compile(r"27/Nov/2026:04:5(\d):(\d\d) \+0000")

_BARE_ACCESS = re.compile(
    r'^(\S+) - (\S+) \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"$'
)
_BARE_TEXT = re.compile(r'^time="([^"]*)" level=(\w+) msg="((?:[^"\\]|\\.)*)"')
_BARE_JSON = re.compile(r'"msg":"((?:[^"\\]|\\.)*)"')


def _templates(formatter: str) -> list[str]:
    path = FIXTURES / f"registry-{formatter}.log"
    if not path.is_file():
        raise SystemExit(f"capture missing: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if "instance.id" not in line]  # startup lines happen once


def build_lines(count: int, formatter: str, seed: int = 7) -> Iterator[str]:
    """`count` lines replaying the capture with fresh ids, addresses and later times."""
    templates = _templates(formatter)
    rng = random.Random(seed)
    produced = 0
    round_ = 0
    while produced < count:
        shift = timedelta(seconds=40 * round_)
        ids: dict[str, str] = {}
        client = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

        def new_id(match: re.Match[str], ids: dict[str, str] = ids) -> str:
            return ids.setdefault(match.group(0), str(uuid.UUID(int=rng.getrandbits(128))))

        def new_addr(match: re.Match[str], client: str = client) -> str:
            if match.group(1):
                return f"{match.group(1)}{client}:{rng.randrange(30000, 60000)}"
            return client

        def new_rfc(match: re.Match[str], shift: timedelta = shift) -> str:
            minute, second, fraction = match.groups()
            when = _START.replace(minute=50 + int(minute), second=int(second)) + shift
            return f"{when:%Y-%m-%dT%H:%M:%S}.{fraction}Z"

        def new_clf(match: re.Match[str], shift: timedelta = shift) -> str:
            minute, second = match.groups()
            when = _START.replace(minute=50 + int(minute), second=int(second)) + shift
            return f"{when:%d/%b/%Y:%H:%M:%S} +0000"

        for template in templates:
            if produced >= count:
                return
            line = _UUID.sub(new_id, template)
            line = _ADDR.sub(new_addr, line)
            line = _CLF.sub(new_clf, line) if line[0].isdigit() else _RFC3339.sub(new_rfc, line)
            produced += 1
            yield line
        round_ += 1


def _best(repeat: int, run: Callable[[], object]) -> tuple[float, float]:
    """Best CPU seconds of `repeat` runs, and the wall seconds of that run."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        run()
        best = min(best, (time.process_time() - cpu, time.perf_counter() - wall))
    return best


def _bare_loop(lines: list[str]) -> int:
    matched = 0
    access, text, json_ = _BARE_ACCESS.match, _BARE_TEXT.match, _BARE_JSON.search
    for line in lines:
        if (access(line) or text(line) or json_(line)) is not None:
            matched += 1
    return matched


def _feed(lines: list[str]) -> LogClassifier:
    classifier = LogClassifier()
    classifier.feed_many(lines)
    return classifier


def _read_and_feed(path: Path) -> LogClassifier:
    classifier = LogClassifier()
    with path.open("rb") as handle:
        classifier.feed_many(read_lines(handle))
    return classifier


def _parse_and_consume(lines: list[str]) -> LogClassifier:
    classifier = LogClassifier()
    for line in lines:
        classifier.consume(parse_line(line))
    return classifier


def _goaccess(combined: Path, workdir: Path, repeat: int) -> tuple[float, float] | None:
    binary = shutil.which("goaccess")
    if binary is None:
        return None
    output = workdir / "goaccess.json"

    def run() -> tuple[float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter()
        subprocess.run(
            [binary, str(combined), "--log-format=COMBINED", "-o", str(output)],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return cpu, wall

    return min(run() for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--formatter", choices=("text", "json"), default="text")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        workdir = Path(tmp)
        path = workdir / f"registry-{args.formatter}.log"
        combined = workdir / "access.log"
        with path.open("w", encoding="utf-8") as out, combined.open("w", encoding="utf-8") as acc:
            for line in build_lines(args.lines, args.formatter):
                out.write(line + "\n")
                if line[0].isdigit():
                    acc.write(line + "\n")
        with path.open("rb") as handle:
            lines = list(read_lines(handle))
        access_count = sum(1 for line in lines if line[0].isdigit())

        check = _feed(lines)
        slow = _parse_and_consume(lines)
        if (check.counters, check.counters.lines_by_result["malformed"]) != (slow.counters, 0):
            raise SystemExit("fast and full paths disagree, or lines did not parse")

        rows: list[tuple[str, int, tuple[float, float]]] = [
            ("LogClassifier.feed_many", len(lines), _best(args.repeat, lambda: _feed(lines))),
            (
                "read_lines + feed (from the file)",
                len(lines),
                _best(args.repeat, lambda: _read_and_feed(path)),
            ),
            (
                "parse_line + consume (full parse)",
                len(lines),
                _best(args.repeat, lambda: _parse_and_consume(lines)),
            ),
            ("bare compiled-regex loop", len(lines), _best(args.repeat, lambda: _bare_loop(lines))),
        ]
        goaccess = _goaccess(combined, workdir, args.repeat)
        if goaccess is not None:
            rows.append(("goaccess --log-format=COMBINED", access_count, goaccess))

    bare = next(cpu for name, _, (cpu, _wall) in rows if name.startswith("bare")) / len(lines)
    print(
        f"{len(lines):,} lines ({args.formatter} formatter, {access_count:,} combined-format), "
        f"Python {sys.version.split()[0]}, best of {args.repeat} by CPU time\n"
    )
    print("| what | lines | CPU s | wall s | lines/s (CPU) | µs/line | vs bare regex |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, count, (cpu, wall) in rows:
        per_line = cpu / count
        print(
            f"| {name} | {count:,} | {cpu:.2f} | {wall:.2f} | {count / cpu:,.0f} | "
            f"{per_line * 1e6:.2f} | {bare / per_line:.2f}x |"
        )
    classifier = _feed(lines)
    counters = classifier.counters
    print(
        f"\nauth failures {counters.auth_failures:,}, anonymous challenges "
        f"{counters.anonymous_challenges:,}, malformed {counters.lines_by_result['malformed']}, "
        f"lines taking the shortcut {classifier.shortcuts:,}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
