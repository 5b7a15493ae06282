"""The detector's state as the store keeps it (version 3): a core document and parts.

The core holds the windows and the open incidents. Each account's learned addresses and each
repository's protected tags are a part of their own, saved in a row of its own, so a save
rewrites only the parts a pass changed: what a save costs follows what the passes since the
last one judged, not how many accounts and repositories the detector has learned (1.2 MB of
parts on the `bench.scale` store; 8.6 MB with 2,000 accounts and 60k protected tags).

A part's key names its kind and a digest of its account or repository, so a key has one length
whatever the name's; the name itself is in the part's body. Versions 1 and 2 saved the whole
state in one document: read as they are (any parts beside them are stale, and are replaced).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

from monitor.detect.state import DetectorState, document_of, state_from_document
from monitor.errors import ParseError

SAVED_VERSION = 3
BASELINE = "baseline"
TAGS = "tags"


def part_key(kind: str, name: str) -> str:
    """`<kind>:<32 hex digits of the name's BLAKE2b>`."""
    return kind + ":" + hashlib.blake2b(name.encode(), digest_size=16).hexdigest()


def part_digest(body: str) -> bytes:
    """What a save compares to tell whether a part changed since it was saved or read."""
    return hashlib.blake2b(body.encode(), digest_size=16).digest()


def saved_form(state: DetectorState) -> tuple[str, dict[str, str]]:
    """The core document and the parts by key, as JSON (stable key order)."""
    document = document_of(state)
    baselines, tags = document.pop("baselines"), document.pop("tags")
    core = _dumps({**document, "version": SAVED_VERSION})
    parts = {
        part_key(BASELINE, actor): _dumps({"actor": actor, **baseline})
        for actor, baseline in baselines.items()
    }
    parts.update(
        (part_key(TAGS, repository), _dumps({"repository": repository, "tags": protected}))
        for repository, protected in tags.items()
    )
    return core, parts


def state_from_saved(core: str, parts: Iterable[str]) -> tuple[DetectorState, bool]:
    """The state `saved_form` wrote, or a version 1 or 2 document's, whose parts are stale and
    ignored; and whether the parts belong to it (a version 3 core). ParseError when `core` is
    not a saved state."""
    try:
        document = orjson.loads(core)
        version = document.get("version") if isinstance(document, dict) else None
        if version != SAVED_VERSION:
            if type(version) is not int or version not in (1, 2):
                raise ValueError(f"expected a version 1, 2 or {SAVED_VERSION} detector state")
            return state_from_document(document), False
        baselines: dict[str, Any] = {}
        tags: dict[str, Any] = {}
        for body in parts:
            part = orjson.loads(body)
            if "actor" in part:
                baselines[_name(part["actor"])] = {
                    "since": part["since"],
                    "addresses": part["addresses"],
                }
            else:
                tags[_name(part["repository"])] = part["tags"]
        whole = {**document, "version": 2, "baselines": baselines, "tags": tags}
        return state_from_document(whole), True
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ParseError("detector_state", f"invalid detector state: {exc}") from exc


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a part names its account or repository with a string")
    return value


def _dumps(document: dict[str, Any]) -> str:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode()
