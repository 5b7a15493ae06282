"""Pages of a stored plan: its decisions and actions a page at a time. Pure over a `Source`
of the stored bytes (monitor.cleanup.plan_chunks); a plan in format 5 reads only the chunks a
page spans."""

from __future__ import annotations

from datetime import UTC, datetime

from monitor.cleanup.plan import DigestAction, Plan, Selection, TagDecision
from monitor.cleanup.plan_chunks import (
    MAGIC,
    BytesSource,
    Layout,
    Source,
    actions_page,
    decisions_page,
    read_layout,
    selection_of,
)
from monitor.cleanup.stored_plan import decode, decode_selection, readable

__all__ = ["EMPTY", "PlanPages"]


EMPTY = Plan(datetime.min.replace(tzinfo=UTC), (), (), 0)
"""A plan with nothing in it (the pages of a plan kept without a document)."""


class PlanPages:
    """Pages of one stored plan's decisions (in stored order) and actions (in plan order). A
    plan in format 5 reads the header and the chunks a page spans from `source` (`size`
    bytes), so a page costs the same in a plan of any size; one stored before is read whole
    and decoded whole at its first page; `plan` is one kept as a document. ParseError when
    the stored bytes are not a plan."""

    def __init__(
        self, source: Source | None = None, size: int = 0, *, plan: Plan | None = None
    ) -> None:
        self._plan = plan
        self._layout: Layout | None = None
        self._older: bytes | None = None
        self._source: Source = source or BytesSource(b"")
        if source is None:
            return
        with readable():
            if size >= len(MAGIC) and source.read(0, len(MAGIC)) == MAGIC:
                self._layout = read_layout(source, size)
            else:
                self._older = source.read(0, size)

    @classmethod
    def of(cls, data: bytes) -> PlanPages:
        """Pages of the stored plan `data`."""
        return cls(BytesSource(data), len(data))

    def _whole(self) -> Plan:
        """The plan stored before format 5, or kept as a document, decoded once."""
        if self._plan is None:
            self._plan = decode(self._older) if self._older is not None else EMPTY
        return self._plan

    @property
    def decision_count(self) -> int:
        if self._layout is not None:
            return self._layout.decision_count
        return len(self._whole().decisions)

    @property
    def action_count(self) -> int:
        if self._layout is not None:
            return self._layout.action_count
        return len(self._whole().actions)

    def selection(self) -> Selection:
        """The tags the plan deletes with their reasons (`Plan.selection`), read from its
        decisions alone."""
        if self._layout is not None:
            with readable():
                return selection_of(self._source, self._layout)
        if self._older is not None:
            return decode_selection(self._older)
        return self._whole().selection()

    def decisions(self, start: int, limit: int) -> list[TagDecision]:
        """Up to `limit` decisions from the `start`th."""
        if self._layout is None:
            return list(self._whole().decisions[start : start + limit])
        with readable():
            return decisions_page(self._source, self._layout, start, limit)

    def actions(self, start: int, limit: int) -> list[DigestAction]:
        """Up to `limit` actions from the `start`th."""
        if self._layout is None:
            return list(self._whole().actions[start : start + limit])
        with readable():
            return actions_page(self._source, self._layout, start, limit)
