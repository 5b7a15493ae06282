"""A detector's state loaded from the store and saved to it in parts
(`monitor.detect.saved_state`).

A save writes the core document, the parts whose JSON differs from what was last saved or read
(`Digests`, kept by the caller between the two), and deletes the parts of accounts and
repositories the state no longer holds. Functions take a session and never commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from monitor.detect.saved_state import part_digest, saved_form, state_from_saved
from monitor.detect.state import DetectorState
from monitor.store.detector_state import (
    SavedDetector,
    read_detector,
    read_parts,
    save_detector,
    save_parts,
)

Digests = dict[str, bytes]
"""Each saved part's `part_digest`, by key; an empty digest marks a stale part."""


def load_state(
    session: Session, name: str, *, now: datetime
) -> tuple[SavedDetector, DetectorState, Digests]:
    """Detector `name`'s row, its state (empty when none was saved) and its parts' digests,
    without locking the row. ParseError when the saved state is not one."""
    saved = read_detector(session, name, now=now)
    parts = read_parts(session, name)
    if not saved.state:
        return saved, DetectorState(), dict.fromkeys(parts, b"")
    state, parted = state_from_saved(saved.state, parts.values())
    if not parted:  # saved before parts: any part is stale, replaced or removed by the save
        return saved, state, dict.fromkeys(parts, b"")
    return saved, state, {key: part_digest(body) for key, body in parts.items()}


def save_state(
    session: Session,
    name: str,
    state: DetectorState,
    *,
    cursor: int,
    now: datetime,
    saved: Digests,
) -> Digests:
    """Saves detector `name` (its row locked in this transaction): the core, the parts that
    differ from `saved`, and no part `state` does not hold. Returns the parts' digests now."""
    core, parts = saved_form(state)
    digests = {key: part_digest(body) for key, body in parts.items()}
    save_parts(
        session,
        name,
        changed={key: body for key, body in parts.items() if saved.get(key) != digests[key]},
        removed=[key for key in saved if key not in parts],
    )
    save_detector(session, name, state=core, cursor=cursor, now=now)
    return digests
