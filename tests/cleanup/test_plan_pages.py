"""A page of a stored plan's decisions or actions reads the header and the chunks it spans,
and pages followed from the first to the last give the stored plan, in every format."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import pytest

from monitor.cleanup.plan import Decision, DigestAction, Plan, Reason, TagDecision
from monitor.cleanup.plan_chunks import (
    CHUNK,
    LENGTH,
    MAGIC,
    BytesSource,
    decisions_page,
    read_layout,
)
from monitor.cleanup.plan_pages import PlanPages
from monitor.cleanup.stored_plan import as_stored, decode, encode
from monitor.errors import ParseError
from tests.cleanup.factories import NOW
from tests.cleanup.test_stored_plan import FORMAT_3, FORMAT_4

T = TypeVar("T")
OTHER = "sha512:" + "c" * 128
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def big_plan() -> Plan:
    """Three chunks of decisions and three of actions: 1,500 deleted tags two to a digest,
    1,000 kept, 1,200 untagged manifests; a repository with a digest that is not SHA-256, a
    deleted tag no action names and a digest another repository deletes too; a repository
    with actions only."""
    decisions = [
        TagDecision("team/app", f"pr-{n:04d}", sha(n // 2), Decision.DELETE, Reason.DELETE_RULE)
        for n in range(1500)
    ]
    decisions += [
        TagDecision("team/app", f"v{n:04d}", sha(5000 + n), Decision.KEEP, Reason.PINNED, "p")
        for n in range(1000)
    ]
    actions = [
        DigestAction(
            "team/app",
            sha(n),
            (f"pr-{2 * n:04d}", f"pr-{2 * n + 1:04d}"),
            Reason.DELETE_RULE,
            "p",
            MANIFEST,
        )
        for n in range(750)
    ]
    actions += [
        DigestAction("team/app", sha(10_000 + n), (), Reason.UNTAGGED, "p", None)
        for n in range(1200)
    ]
    decisions += [
        TagDecision("team/lib", "odd", OTHER, Decision.DELETE, Reason.DELETE_RULE, "p", "r"),
        TagDecision("team/lib", "orphan", sha(-1), Decision.DELETE, Reason.DELETE_RULE, "p"),
        TagDecision("team/lib", "shared", sha(0), Decision.DELETE, Reason.DELETE_RULE, "p"),
    ]
    actions += [
        DigestAction("team/lib", OTHER, ("odd",), Reason.DELETE_RULE, "p", None),
        DigestAction("team/lib", sha(0), ("shared",), Reason.DELETE_RULE, "p", MANIFEST),
    ]
    actions += [
        DigestAction("team/only", sha(20_000 + n), (), Reason.UNTAGGED, "q", MANIFEST)
        for n in range(50)
    ]
    return Plan(NOW, tuple(decisions), tuple(actions), 123)


BIG = big_plan()
DATA = encode(BIG)


def walk(page: Callable[[int, int], list[T]], limit: int) -> list[T]:
    out: list[T] = []
    while found := page(len(out), limit):
        assert len(found) <= limit
        out.extend(found)
    return out


class TestPlanPages:
    def test_the_plan_spans_several_chunks(self) -> None:
        layout = read_layout(BytesSource(DATA), len(DATA))
        assert (3, 3, 2503, 2002) == (
            len(layout.decisions),
            len(layout.actions),
            layout.decision_count,
            layout.action_count,
        )

    @pytest.mark.parametrize("limit", [CHUNK, 333, 97])
    def test_pages_followed_to_the_end_are_the_stored_plan(self, limit: int) -> None:
        """At any page size, the pages give every decision and action once, in order, each
        deleted tag with its digest."""
        pages = PlanPages.of(DATA)
        stored = as_stored(BIG)
        assert (list(stored.decisions), list(stored.actions), stored) == (
            walk(pages.decisions, limit),
            walk(pages.actions, limit),
            decode(DATA),
        )

    def test_pages_of_one_at_the_edges_of_chunks(self) -> None:
        pages, stored = PlanPages.of(DATA), as_stored(BIG)
        at = (0, 999, 1000, 1999, 2000)
        assert ([stored.decisions[i] for i in at], [stored.actions[i] for i in at]) == (
            [pages.decisions(i, 1)[0] for i in at],
            [pages.actions(i, 1)[0] for i in at],
        )

    def test_a_page_reads_the_header_the_chunks_it_spans_and_its_digests(self) -> None:
        """A page of 1,000 decisions from the 1,500th reads two chunks of decisions and the
        digests their deleted tags refer to (each once), nothing else: a page costs the same in a plan of
        any size."""
        reads: list[tuple[int, int]] = []

        class Counting(BytesSource):
            def read(self, offset: int, length: int) -> bytes:
                reads.append((offset, length))
                return super().read(offset, length)

        source = Counting(DATA)
        layout = read_layout(source, len(DATA))
        header_reads = len(reads)
        page = decisions_page(source, layout, 1500, CHUNK)
        chunks = {(c.offset, c.length) for c in layout.decisions}
        read_chunks = [r for r in reads[header_reads:] if r in chunks]
        digests = [r for r in reads[header_reads:] if r[0] >= layout.digests_offset]
        held = {(a.repository, a.digest) for a in BIG.actions if a.digest != OTHER}
        spanned = as_stored(BIG).decisions[1000:]
        deleted = len({(d.repository, d.digest) for d in spanned} & held)
        assert (2, [layout.decisions[1], layout.decisions[2]], deleted) == (
            header_reads,
            [c for c in layout.decisions if (c.offset, c.length) in read_chunks],
            len(digests),
        )
        assert (len(reads), len(page)) == (header_reads + len(read_chunks) + len(digests), CHUNK)

    def test_a_page_beyond_the_end_is_empty(self) -> None:
        pages = PlanPages.of(DATA)
        assert ([], [], [BIG.actions[-1]]) == (
            pages.decisions(2503, 10),
            pages.actions(10**9, 10),
            pages.actions(2001, 10),
        )

    @pytest.mark.parametrize("data", [FORMAT_3, FORMAT_4])
    def test_plans_stored_before_page_from_the_whole_plan(self, data: bytes) -> None:
        """A plan stored in format 3 or 4 pages from the plan decoded whole; its selection
        reads from its decisions."""
        pages, whole = PlanPages.of(data), decode(data)
        assert (list(whole.decisions[1:4]), list(whole.actions[1:2]), 6, 2, whole.selection()) == (
            pages.decisions(1, 3),
            pages.actions(1, 1),
            pages.decision_count,
            pages.action_count,
            pages.selection(),
        )

    def test_a_plan_kept_as_a_document_pages_as_it_loads(self) -> None:
        pages = PlanPages(plan=BIG)
        assert (list(BIG.decisions[5:7]), 2503) == (pages.decisions(5, 2), pages.decision_count)


def with_header(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """`data` with its header changed by `change`."""
    (length,) = LENGTH.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + LENGTH.size
    header = orjson.loads(data[start : start + length])
    change(header)
    text = orjson.dumps(header)
    return MAGIC + LENGTH.pack(len(text)) + text + data[start + length :]


class TestDamagedPlans:
    def test_an_index_that_does_not_match_its_chunk_is_a_parse_error(self) -> None:
        """A chunk holding other than the count its index gives is refused, on a page and
        whole."""

        def fewer(header: dict[str, Any]) -> None:
            header["decisions"][1][0] -= 1

        damaged = with_header(DATA, fewer)
        pages = PlanPages.of(damaged)
        with pytest.raises(ParseError):
            pages.decisions(1000, 10)
        with pytest.raises(ParseError):
            decode(damaged)
        assert BIG.decisions[0].tag == pages.decisions(0, 1)[0].tag  # its first chunk reads

    @pytest.mark.parametrize(
        "damaged",
        [
            DATA[:-32],
            DATA + b"\0",
            with_header(DATA, lambda h: h.update(actions=[[1, 2]])),
            with_header(DATA, lambda h: h.update(decisions=[[-1, 5]])),
            with_header(DATA, lambda h: h.update(format=4)),
            MAGIC + b"\0\0\0\2{}",
            MAGIC + b"\0\0",
        ],
    )
    def test_damaged_bytes_are_a_parse_error_when_opened(self, damaged: bytes) -> None:
        with pytest.raises(ParseError):
            PlanPages.of(damaged)
        with pytest.raises(ParseError):
            decode(damaged)
