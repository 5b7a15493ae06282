"""Account activity for the audit: each account's last successful event, and since when the
monitor has been listening. Functions take a session and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from monitor.events import Action
from monitor.store.schema import CoverageRow, EventRow

SUCCESS_ACTIONS = (Action.PUSH.value, Action.PULL.value, Action.MOUNT.value, Action.DELETE.value)


def last_successes(session: Session, actors: Sequence[str]) -> dict[str, datetime | None]:
    """Per actor, the time of its newest push, pull, mount or delete (None: none stored).

    One indexed lookup per actor (`ix_events_actor_occurred_at`); htpasswd files are small.
    """
    out: dict[str, datetime | None] = {}
    for actor in dict.fromkeys(actors):
        out[actor] = session.scalar(
            select(func.max(EventRow.occurred_at)).where(
                EventRow.actor == actor, EventRow.action.in_(SUCCESS_ACTIONS)
            )
        )
    return out


def listening_since(session: Session) -> datetime | None:
    """When the monitor first recorded coverage (None: never)."""
    return session.scalar(select(func.min(CoverageRow.started_at)))
