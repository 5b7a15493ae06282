"""The stored form of a plan gives back the plan the planner made (without the digests of the
tags it keeps), is written a repository at a time, reads the older formats, and refuses what
it is not."""

from __future__ import annotations

import base64
import itertools
import zlib
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.cleanup.model import ManifestInfo, RepositoryState, TagState
from monitor.cleanup.plan import Decision, DigestAction, Plan, Reason, TagDecision
from monitor.cleanup.plan_chunks import BytesSource, read_layout
from monitor.cleanup.planner import Planner, plan
from monitor.cleanup.stored_plan import (
    MAGIC,
    PlanWriter,
    as_stored,
    canonical,
    decode,
    decode_selection,
    encode,
    encode_plan,
)
from monitor.errors import ParseError
from tests.cleanup.factories import NOW, one_policy
from tests.cleanup.fixture_state import fixture_state
from tests.cleanup.test_planner_properties import FULL, policies, registries

A = "sha256:" + "ab" * 32
B = "sha256:" + "cd" * 32
C = "sha256:" + "ef" * 32
OTHER = "sha512:" + "c" * 128
MANIFEST = "application/vnd.oci.image.manifest.v1+json"

# A plan stored in format 3 by the code before format 4 (every tag's digest stored), and the
# plan it holds.
FORMAT_3 = base64.b64decode(
    "Uk1QMwAAAQN4nM2QwWrDMAyGX2XouoTFztJBYNCH2K0U4zpKF+rYRnY6yti7T3aWw849bJaRJfCv70efMHqadYK+rc"
    "AQ6oSDyi3IRu5qIWrZvDVt3zR8H0uGCk63hFGNhDhAL2T73O0qIAw+TsnThBH6wwES6vlJhwAVN4F8QsPTWR4m50ph"
    "Jk6WmTHxp606conjfQHHPGVAiwmZsRaKFosbNlDMzEC1KF0tC3jPzX5VL+7i/IfLAn9F0mdUZx02/cvDoG/biLZozX"
    "BfMLaAy+LsdCqLuyBmZn7U7GNShAZd2mx02cFVFP5rfNedkL3547Ou78e48+rX9t1ibQXFtfxvrvl8fQN37A9TeJyl"
    "jkEOwyAMBP/iaykp/Q5ClRtc5MoYlEDeX1fKD6I9rLSH2YkRBmFdsHdwgO9rARehb/dgKKsnJAeZhAa9tilk68r/"
    "l96FVxzcdDk0+7ay54qFfEXlD+3DH+H23Zsa4PQTNjg8wrWYnylNHVgK5dNHp0hKP3XdUMo="
)
FORMAT_3_PLAN = Plan(
    datetime(2026, 11, 20, 3, 0, tzinfo=UTC),
    (
        TagDecision("team/app", "latest", C, Decision.PROTECTED, Reason.PINNED, "ci", "latest"),
        TagDecision("team/app", "pr-1", A, Decision.DELETE, Reason.DELETE_RULE, "ci", "prs"),
        TagDecision("team/app", "pr-2", A, Decision.DELETE, Reason.DELETE_RULE, "ci", "prs"),
        TagDecision("team/app", "pr-3", B, Decision.UNKNOWN, Reason.COVERAGE_GAP, "ci", "7 days"),
        TagDecision("team/lib", "v1", OTHER, Decision.KEEP, Reason.KEEP_MOST_RECENT, "ci", "5"),
        TagDecision("team/lib", "v2", OTHER, Decision.KEEP, Reason.NO_DELETE_RULE, None, ""),
    ),
    (
        DigestAction("team/app", A, ("pr-1", "pr-2"), Reason.DELETE_RULE, "ci", MANIFEST),
        DigestAction("team/lib", "sha256:" + "01" * 32, (), Reason.UNTAGGED, "ci", None),
    ),
    123456,
)


# The same plan stored in format 4 by the code before format 5.
FORMAT_4 = base64.b64decode(
    "Uk1QNAAAAEp7ImZvcm1hdCI6NCwiY3JlYXRlZF9hdCI6IjIwMjYtMTEtMjBUMDM6MDA6MDArMDA6MDAiLCJieXRlc19m"
    "cmVlZCI6MTIzNDU2fQAAAJ542lWOQQqDMBBFr1KyVootpYcJElL9iBgnQxwtvX2TsVl0k/yQ92a+tUbg16tnNo21hlMU"
    "DILRNIZnIg3DnI/gBZtkqKa+z3lEgCB/n8GlPaAanLaCc2o7fbW309lpofimgsUDyU9wk+dqPS+j/1Txng11tGSYX1py"
    "AQpeLrfGTVzCAJI64VHkozuX/ViK7q8h7SE0RsGb7ui/ZIxUVQAAAHJ42i2NUQrDIBBE77K/tYb0OiJhq1vZsK6SaM7f"
    "bcnPDAyPNyHAIKwL9g4uhAD9eK7gfvWC6CCT0KDtmEK2JrYwVDjh4KbLpdm3xJ4rFvIVlT90Dn+tj/1sCjFGdx8Iv/8H"
    "5pw6sBTKt1CniIHxC3SULkqrq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urqwEBAQEBAQEBAQEBAQEBAQEBAQEB"
    "AQEBAQEBAQEBAQEB"
)


def written(planner: Planner, repositories: list[RepositoryState]) -> bytes:
    """The stored form written as `make_plan` writes it: a repository at a time."""
    writer = PlanWriter(planner.now)
    for part in planner.each(repositories):
        writer.add(part.name, part.decisions, part.actions)
    return writer.finish(planner.bytes_freed()).data


def by_repository(tags: list[TagState], manifests: list[ManifestInfo]) -> list[RepositoryState]:
    names = sorted({t.repository for t in tags} | {m.repository for m in manifests})
    return [
        RepositoryState(
            name,
            [t for t in tags if t.repository == name],
            [m for m in manifests if m.repository == name],
        )
        for name in names
    ]


class TestStoredPlan:
    @settings(max_examples=150, deadline=None)
    @given(registry=registries(), chosen=policies())
    def test_planner_plans_round_trip_without_kept_digests(self, registry, chosen) -> None:
        """Every decision (reason, policy, detail; the digest of each deleted tag), action,
        time and size comes back; the tags not deleted come back without their digest."""
        tags, manifests = registry
        made = plan(chosen, tags, manifests, FULL, NOW)
        loaded = decode(encode(made))
        kept_digests = {d.digest for d in loaded.decisions if d.decision is not Decision.DELETE}
        assert (as_stored(made), made.selection(), set()) == (
            loaded,
            decode_selection(encode(made)),
            kept_digests - {None},
        )

    @settings(max_examples=100, deadline=None)
    @given(registry=registries(), chosen=policies())
    def test_written_a_repository_at_a_time_is_the_whole_plan_stored(
        self, registry, chosen
    ) -> None:
        """The planner's parts written one repository at a time store the very bytes, id,
        counts and selection of the whole plan."""
        tags, manifests = registry
        whole = plan(chosen, tags, manifests, FULL, NOW)
        planner = Planner(chosen, FULL, NOW)
        assert encode(whole) == written(planner, by_repository(tags, manifests))
        stored = encode_plan(whole)
        assert (stored.plan_id, stored.counts, stored.actions, stored.selection) == (
            whole.plan_id,
            whole.counts(),
            len(whole.actions),
            whole.selection(),
        )

    @settings(max_examples=100, deadline=None)
    @given(registry=registries(), chosen=policies(), cuts=st.lists(st.integers(0, 3), max_size=3))
    def test_written_in_parts_is_the_whole_plan(self, registry, chosen, cuts) -> None:
        """Repositories written by writers of parts (as processes planning ranges of them do)
        and absorbed in order give the plan one writer gives: the same plan loaded back, id,
        counts and selection; only where chunks end may differ."""
        tags, manifests = registry
        repositories = by_repository(tags, manifests)
        whole = plan(chosen, tags, manifests, FULL, NOW)
        bounds = sorted({0, len(repositories), *(min(c, len(repositories)) for c in cuts)})
        writer = PlanWriter(NOW)
        planner = Planner(chosen, FULL, NOW)
        for start, stop in itertools.pairwise(bounds):
            part = PlanWriter(NOW, part=True)
            for one in planner.each(repositories[start:stop]):
                part.add(one.name, one.decisions, one.actions)
            writer.absorb(part.part())
        stored = writer.finish(planner.bytes_freed())
        assert (decode(stored.data), stored.plan_id, stored.counts, stored.selection) == (
            as_stored(whole),
            whole.plan_id,
            whole.counts(),
            whole.selection(),
        )

    def test_a_part_refers_to_digests_after_those_before_it(self) -> None:
        """A tag deleted in a later part finds its digest (a reference into the digests part)
        once its part's digests come after the first part's."""
        decisions = [
            TagDecision("a/one", "v1", A, Decision.DELETE, Reason.DELETE_RULE, "p", "r"),
            TagDecision("b/two", "v1", B, Decision.DELETE, Reason.DELETE_RULE, "p", "r"),
        ]
        actions = [
            DigestAction("a/one", A, ("v1",), Reason.DELETE_RULE, "p", MANIFEST),
            DigestAction("b/two", B, ("v1",), Reason.DELETE_RULE, "p", MANIFEST),
        ]
        writer = PlanWriter(NOW)
        for decision, action in zip(decisions, actions, strict=True):
            part = PlanWriter(NOW, part=True)
            part.add(decision.repository, [decision], [action])
            writer.absorb(part.part())
        loaded = decode(writer.finish(0).data)
        assert (list(loaded.decisions), list(loaded.actions)) == (decisions, actions)
        with pytest.raises(ValueError, match="no part"):
            PlanWriter(NOW).part()

    def test_real_captures_plan_stored_and_written_alike(self) -> None:
        """On the state of the captured registry, the plan written per repository loads back
        as the planner's plan, stored."""
        tags, manifests = fixture_state()
        now = max(t.last_pushed_at for t in tags) + timedelta(days=1)
        coverage = ((now - timedelta(days=9), now),)
        chosen = one_policy("  delete: [{tags: ['1.0', 'multi']}]\n")
        whole = plan(chosen, tags, manifests, coverage, now)
        data = written(Planner(chosen, coverage, now), by_repository(tags, manifests))
        assert (as_stored(whole), True) == (decode(data), bool(whole.actions))

    def test_no_digest_of_a_kept_tag_is_stored(self) -> None:
        """The digests stored are the actions' alone: a kept tag's digest is not in the bytes,
        in any spelling."""
        kept = TagDecision("a/b", "v1", C, Decision.KEEP, Reason.NO_DELETE_RULE)
        deleted = TagDecision("a/b", "pr-1", A, Decision.DELETE, Reason.DELETE_RULE, "p", "r")
        action = DigestAction("a/b", A, ("pr-1",), Reason.DELETE_RULE, "p", MANIFEST)
        data = encode(Plan(NOW, (kept, deleted), (action,), 0))
        assert (False, False, True) == (
            bytes.fromhex(C[7:]) in data,
            C[7:].encode() in self._texts(data),
            bytes.fromhex(A[7:]) in data,
        )

    @staticmethod
    def _texts(data: bytes) -> bytes:
        """The header and the decompressed text of every chunk of a format 5 plan."""
        layout = read_layout(BytesSource(data), len(data))
        start = layout.decisions[0].offset if layout.decisions else layout.actions[0].offset
        chunks = [*layout.decisions, *layout.actions]
        return b"\n".join(
            [data[:start], *(zlib.decompress(data[c.offset : c.offset + c.length]) for c in chunks)]
        )

    def test_decisions_come_back_in_planner_order(self) -> None:
        """Decisions given out of order come back per repository (first seen) in tag order."""
        decisions = tuple(
            TagDecision(repo, tag, A, Decision.KEEP, Reason.PINNED, "p", "v*")
            for repo, tag in [("b/x", "v2"), ("a/y", "z"), ("b/x", "v1"), ("a/y", "a")]
        )
        given_plan = Plan(NOW, decisions, (), 0)
        expected = [("b/x", "v1"), ("b/x", "v2"), ("a/y", "a"), ("a/y", "z")]
        decoded = decode(encode(given_plan))
        assert (expected, as_stored(canonical(given_plan))) == (
            [(d.repository, d.tag) for d in decoded.decisions],
            decoded,
        )

    def test_action_digest_without_the_usual_spelling_is_kept_verbatim(self) -> None:
        """An action's digest not in lower-case sha256: form is stored as given, in order with
        the others."""
        actions = tuple(
            DigestAction("a/b", digest, (tag,), Reason.DELETE_RULE, "p", None)
            for digest, tag in [
                (A, "t1"),
                (OTHER, "t2"),
                ("sha256:" + "AB" * 32, "t3"),  # upper case
                (B, "t4"),
                ("sha256:" + "ab" * 30 + " ab ", "t5"),  # 64 characters, 31 bytes and spaces
                ("sha256:" + "ab" * 31 + "zz", "t6"),  # not hexadecimal
                ("sha256:" + "ab" * 33, "t7"),  # too long
                ("sha256:" + "ab" * 31, "t8"),  # too short
            ]
        )
        decisions = tuple(
            TagDecision("a/b", a.tags[0], a.digest, Decision.DELETE, Reason.DELETE_RULE, "p", "r")
            for a in actions
        )
        given_plan = Plan(NOW, decisions, actions, 7)
        assert given_plan == decode(encode(given_plan))

    def test_deleted_tag_no_action_names_keeps_its_digest(self) -> None:
        """A deleted tag whose digest no action names (never made by the planner) still comes
        back with its digest."""
        decisions = (
            TagDecision("a/b", "t1", A, Decision.DELETE, Reason.DELETE_RULE, "p", "r"),
            TagDecision("a/b", "t2", OTHER, Decision.DELETE, Reason.DELETE_RULE, "p", "r"),
        )
        action = DigestAction("a/b", A, ("t1",), Reason.DELETE_RULE, "p", None)
        given_plan = Plan(NOW, decisions, (action,), 0)
        assert given_plan == decode(encode(given_plan))

    def test_actions_of_repositories_in_any_order_keep_it(self) -> None:
        """Actions interleaving repositories, and of repositories without decisions, come back
        in their order (the plan id hashes them in order)."""
        actions = tuple(
            DigestAction(repo, digest, (), Reason.UNTAGGED, "p", MANIFEST)
            for repo, digest in [("b/x", A), ("a/y", B), ("b/x", C), ("c/z", A)]
        )
        given_plan = Plan(NOW, (), actions, 0)
        loaded = decode(encode(given_plan))
        assert (given_plan, given_plan.plan_id) == (loaded, loaded.plan_id)

    def test_format_4_still_loads(self) -> None:
        """A plan stored in format 4 loads whole, and its selection reads from its decisions."""
        assert (as_stored(FORMAT_3_PLAN), FORMAT_3_PLAN.selection()) == (
            decode(FORMAT_4),
            decode_selection(FORMAT_4),
        )

    def test_format_3_still_loads_with_every_digest(self) -> None:
        """A plan stored by the format before loads whole, kept tags' digests included, and
        its selection reads from its decisions."""
        assert (FORMAT_3_PLAN, FORMAT_3_PLAN.selection()) == (
            decode(FORMAT_3),
            decode_selection(FORMAT_3),
        )

    @pytest.mark.parametrize(
        "data",
        [
            b"not compressed",
            zlib.compress(b"[1, 2]"),
            zlib.compress(orjson.dumps({"format": 99})),
            zlib.compress(orjson.dumps({"format": 2, "created_at": "x"})),
            FORMAT_3[:40],
            MAGIC,
            MAGIC + b"\0\0\0\2{}",
            encode(FORMAT_3_PLAN)[:-1],
            encode(FORMAT_3_PLAN) + b"\0" * 32,
            encode(FORMAT_3_PLAN)[:30],
            FORMAT_4[:-1],
            FORMAT_4[:30],
        ],
    )
    def test_unreadable_data_is_a_parse_error(self, data: bytes) -> None:
        """Anything but a stored plan (cut short, or with digests no action names) raises
        ParseError, never something else."""
        with pytest.raises(ParseError):
            decode(data)

    @pytest.mark.parametrize("data", [b"not compressed", FORMAT_3[:40], MAGIC, MAGIC + b"\0" * 9])
    def test_unreadable_selection_is_a_parse_error(self, data: bytes) -> None:
        """The selection of anything but a stored plan raises ParseError too."""
        with pytest.raises(ParseError):
            decode_selection(data)
