"""The conversation around runs: votes, handled events, environment locks, chat threads.

Only new tables: nothing existing is altered, so SQLite needs no batch mode here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "votes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("plan_digest", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("via", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_votes_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_votes")),
        # One vote per (run, user, decision); it also serves reading a run's votes.
        sa.UniqueConstraint(
            "run_id", "user", "decision", name=op.f("uq_votes_run_id_user_decision")
        ),
    )

    # The primary key is what makes "first sighting" hold across processes: of two concurrent
    # inserts of one key, exactly one succeeds.
    op.create_table(
        "processed_events",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_processed_events")),
    )

    op.create_table(
        "env_locks",
        sa.Column("environment", sa.String(200), nullable=False),
        sa.Column("locked_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("environment", name=op.f("pk_env_locks")),
    )

    op.create_table(
        "chat_threads",
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("plan_ts", sa.String(64), nullable=False),
        sa.Column("approval_ts", sa.String(64), nullable=False),
        sa.Column("progress_ts", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_chat_threads_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_chat_threads")),
    )
    # A click or reaction names its message by (channel, ts): the plan or the approval message.
    op.create_index(op.f("ix_chat_threads_channel_plan_ts"), "chat_threads", ["channel", "plan_ts"])
    op.create_index(
        op.f("ix_chat_threads_channel_approval_ts"), "chat_threads", ["channel", "approval_ts"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_chat_threads_channel_approval_ts"), table_name="chat_threads")
    op.drop_index(op.f("ix_chat_threads_channel_plan_ts"), table_name="chat_threads")
    op.drop_table("chat_threads")
    op.drop_table("env_locks")
    op.drop_table("processed_events")
    op.drop_table("votes")
