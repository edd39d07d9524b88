"""Schedules: a run's start time, APScheduler's job table, and the scheduling lease.

`runs.starts_at` is set for a run asked for at a later time (`at=`, `window=`); it stays empty for
one that starts once approved. `scheduler_jobs` is the table APScheduler 3's `SQLAlchemyJobStore`
keeps its jobs in (its own column definitions, created here so the schema has one owner), and
`scheduler_lease` holds the one row saying which process schedules, until when.

No run state changes, so the one-active-run index stays as 0003 made it. Adding a nullable column
and new tables needs no batch mode on SQLite.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Spelled out rather than imported from the models: a migration must keep creating what it did.
UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("runs", sa.Column("starts_at", UTC_DATETIME, nullable=True))
    op.create_index("ix_runs_starts_at", "runs", ["starts_at"])
    op.create_table(
        "scheduler_jobs",
        sa.Column("id", sa.Unicode(191), nullable=False),
        sa.Column("next_run_time", sa.Float(25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scheduler_jobs"),
    )
    op.create_index("ix_scheduler_jobs_next_run_time", "scheduler_jobs", ["next_run_time"])
    op.create_table(
        "scheduler_lease",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("since", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_scheduler_lease"),
    )


def downgrade() -> None:
    # 0003 knows no start times: a scheduled run left pending would start as soon as it is
    # approved. Cancel or finish scheduled runs before going down.
    op.drop_table("scheduler_lease")
    op.drop_index("ix_scheduler_jobs_next_run_time", table_name="scheduler_jobs")
    op.drop_table("scheduler_jobs")
    op.drop_index("ix_runs_starts_at", table_name="runs")
    # SQLite (3.35 and later) drops an unindexed column in place: no batch copy, which would
    # have to recreate the partial one-active-run index by reflection.
    op.drop_column("runs", "starts_at")
