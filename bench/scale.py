"""Benchmark at scale: a store of N events (default 10M over 90 days, 1,000 repositories,
100k tags) on SQLite and PostgreSQL, and what intake, reads and jobs do on it.

    python -m bench.scale build [--events N] [--db sqlite|postgresql|both] [--force]
    python -m bench.scale info [--events N]
    python -m bench.scale intake [--events N] [--db ...] [--seconds S] [--empty-only]
                                 [--no-busy] [--uvloop PATH]
    python -m bench.scale readers [--events N] [--db ...] [--seconds S] [--rounds N]
                                  [--before DIR] [--variant LABEL:KEY=VALUE,...] [--profile S]

`build` generates the history (bench/scalegen.py) and bulk-loads it through the store's schema
(bench/scalestore.py) into REGISTRY_MONITOR_BENCH_DATA (default /work/bench-data); a store that
exists is kept and only migrated forward, unless --force.

`intake` measures notification intake with wrk (bench/scaleintake.py): the bare starlette
endpoint and `registry-monitor serve` side by side, on an empty and on the full store (working
copies; the pristine store is never changed), then under retention, readers and detection.
`readers` runs that last phase in fixed windows, for several versions or settings in turn
(bench/scalereaders.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench import scaleintake, scalereaders
from bench.scalegen import Spec
from bench.scalestore import Store, build, exists, migrate_forward

DEFAULT_EVENTS = 10_000_000


def kinds(value: str) -> list[str]:
    return ["sqlite", "postgresql"] if value == "both" else [value]


def ensure(store: Store, *, force: bool = False) -> dict[str, object]:
    """The metadata of the pristine store, building it first when missing (or forced)."""
    if force or not exists(store):
        print(f"building {store.name} ...", flush=True)
        meta = build(store, Spec(events=store.events))
        print(json.dumps(meta, indent=2), flush=True)
        return meta
    migrate_forward(store)
    return store.meta()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "info", "intake", "readers"):
        command = sub.add_parser(name)
        command.add_argument("--events", type=int, default=DEFAULT_EVENTS)
        command.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
        if name == "build":
            command.add_argument("--force", action="store_true")
        if name == "intake":
            command.add_argument("--seconds", type=float, default=20)
            command.add_argument("--empty-only", action="store_true")
            command.add_argument("--no-busy", action="store_true")
            command.add_argument(
                "--uvloop",
                default="",
                metavar="PATH",
                help="a directory holding uvloop (pip install --target PATH): "
                "also the bare endpoint and serve on them",
            )
        if name == "readers":
            command.add_argument("--seconds", type=float, default=120)
            command.add_argument("--rounds", type=int, default=1)
            command.add_argument("--before", type=Path, help="source tree to compare with")
            command.add_argument("--variant", action="append", default=[])
            command.add_argument("--profile", type=float, default=0, metavar="SECONDS")
    args = parser.parse_args()
    if args.command == "readers":
        servers = [scalereaders.Server("this tree")]
        if args.before is not None:
            servers.insert(0, scalereaders.Server("before", tree=args.before.resolve()))
        servers += [scalereaders.parse_variant(v) for v in args.variant]
        with tempfile.TemporaryDirectory() as tmp:
            scalereaders.main(
                [Store(kind, args.events) for kind in kinds(args.db)],
                servers,
                seconds=args.seconds,
                rounds=args.rounds,
                profile=args.profile,
                work=Path(tmp),
            )
        return
    if args.command == "intake":
        stores = [Store(kind, args.events) for kind in kinds(args.db)]
        for store in stores:
            ensure(store)
        scaleintake.main(
            stores,
            seconds=args.seconds,
            full=not args.empty_only,
            busy=not args.no_busy,
            uvloop_path=args.uvloop,
        )
        return
    for kind in kinds(args.db):
        store = Store(kind, args.events)
        if args.command == "build":
            ensure(store, force=args.force)
        elif exists(store):
            print(json.dumps({"store": store.name, "url": store.url(), **store.meta()}, indent=2))
        else:
            print(f"{store.name}: not built")


if __name__ == "__main__":
    main()
