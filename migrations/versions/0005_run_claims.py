"""Run claims: which bot process executes a running run, until when.

`runs.holder` names the process (host, pid and a random part) that executes a run in a held
state (running, rolling back), and `runs.held_until` when its claim runs out unless renewed.
Several processes may share the database: one whose claim ran out (it died, or stalled) has its
run taken over as interrupted by another, which says so in the run's thread.

Adding nullable columns needs no batch mode on SQLite. A run left running by a bot before this
revision has no claim: it counts as lapsed and is marked interrupted by the next bot to start.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("runs", sa.Column("holder", sa.String(200), nullable=True))
    op.add_column("runs", sa.Column("held_until", UTC_DATETIME, nullable=True))


def downgrade() -> None:
    # Unindexed columns: SQLite (3.35 and later) drops them in place.
    op.drop_column("runs", "held_until")
    op.drop_column("runs", "holder")
