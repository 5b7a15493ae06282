"""The detector's state in parts: `detector_parts`.

A detection pass that changes an alert saves the detector's state. Saved as one document, every
save rewrote all of it: every account's learned addresses and every repository's protected tags
(1.2 MB on the `bench.scale` store, 8.6 MB with 2,000 accounts and 60k protected tags), about
once a second while alerts keep changing. Each account's addresses and each repository's tags
are now a row of their own, written only when a pass changed them; `detector_state.state` keeps
the windows and incidents. A state saved before is read as it is and saved in parts by the next
save.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 20:00:00
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "detector_parts",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("part", sa.String(64), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    """Each state saved in parts becomes one version 2 document again."""
    bind = op.get_bind()
    for name, state in bind.execute(sa.text("SELECT name, state FROM detector_state")).all():
        document = json.loads(state) if state else None
        if not isinstance(document, dict) or document.get("version") != 3:
            continue
        baselines, tags = {}, {}
        parts = sa.text("SELECT body FROM detector_parts WHERE name = :name")
        for (body,) in bind.execute(parts, {"name": name}).all():
            part = json.loads(body)
            if "actor" in part:
                baselines[part["actor"]] = {"since": part["since"], "addresses": part["addresses"]}
            else:
                tags[part["repository"]] = part["tags"]
        whole = {**document, "version": 2, "baselines": baselines, "tags": tags}
        bind.execute(
            sa.text("UPDATE detector_state SET state = :state WHERE name = :name"),
            {"state": json.dumps(whole, sort_keys=True, separators=(",", ":")), "name": name},
        )
    op.drop_table("detector_parts")
