"""Where the SQLite intake inbox's files are, named once for the store that opens them and for
the settings that refuse a `notifications.inbox_file` colliding with them."""

from __future__ import annotations

from pathlib import Path


def beside_store(store: Path) -> Path:
    """The inbox an SQLite store at `store` keeps beside itself: `<store>.intake`."""
    return store.with_name(store.name + ".intake")


def second(path: Path) -> Path:
    """An inbox's second file, with which it takes turns: `<path>-2` (its log `<path>-2-wal`)."""
    return path.with_name(path.name + "-2")
