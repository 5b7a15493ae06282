"""Where `now` comes from: a `Clock` is passed in, so code that needs the time can be given any."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""A function that returns the current time, timezone-aware UTC."""


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)
