"""Gates: votes bound to a plan or to a gate inside it, and waiting runs holding their instance.

A vote's `plan_digest` is now the plan's digest or `<plan digest>.<gate step id>`, so the same
approver may approve the plan and later each of its gates: the votes' unique key gains the digest,
and the column is widened to hold a step id (as wide as `runs.plan_digest`, a dot and
`step_results.step_id`). A run waiting at a gate holds its instance, so the one-active-run index
is recreated with `waiting` among its states.

SQLite cannot alter a constraint or a column in place: the votes table goes through batch mode
(copied into a new table). Partial indexes it can drop and create like PostgreSQL.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The run states that hold an instance, before and after this revision (`ACTIVE_STATES`). Spelled
# out rather than imported: a migration must keep creating what it created then.
ACTIVE_STATES_WHERE_0002 = "state IN ('interrupted', 'rolling_back', 'running')"
ACTIVE_STATES_WHERE = "state IN ('interrupted', 'rolling_back', 'running', 'waiting')"

PLAN_DIGEST_0002 = sa.String(64)
VOTE_DIGEST = sa.String(64 + 1 + 200)

UQ_VOTES_0002 = "uq_votes_run_id_user_decision"
UQ_VOTES = "uq_votes_run_id_user_decision_plan_digest"

votes = sa.table(
    "votes",
    sa.column("id", sa.Integer()),
    sa.column("run_id", sa.Integer()),
    sa.column("user", sa.String()),
    sa.column("decision", sa.String()),
    sa.column("plan_digest", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("votes") as batch:
        batch.drop_constraint(UQ_VOTES_0002, type_="unique")
        batch.alter_column(
            "plan_digest",
            existing_type=PLAN_DIGEST_0002,
            type_=VOTE_DIGEST,
            existing_nullable=False,
        )
        batch.create_unique_constraint(UQ_VOTES, ["run_id", "user", "decision", "plan_digest"])
    _active_instance_index(ACTIVE_STATES_WHERE)


def downgrade() -> None:
    # 0002 knows no gates and keeps one vote per (run, user, decision): drop the gate votes (the
    # only digests with a dot), then of what is left keep each user's latest vote per decision,
    # the one most likely bound to the run's current plan. Without this the old constraint and
    # the narrower column could not be restored over the rows 0003 allowed.
    op.execute(votes.delete().where(votes.c.plan_digest.like("%.%")))
    newer = votes.alias("newer")
    op.execute(
        votes.delete().where(
            sa.exists().where(
                newer.c.run_id == votes.c.run_id,
                newer.c.user == votes.c.user,
                newer.c.decision == votes.c.decision,
                newer.c.id > votes.c.id,
            )
        )
    )
    with op.batch_alter_table("votes") as batch:
        batch.drop_constraint(UQ_VOTES, type_="unique")
        batch.alter_column(
            "plan_digest",
            existing_type=VOTE_DIGEST,
            type_=PLAN_DIGEST_0002,
            existing_nullable=False,
        )
        batch.create_unique_constraint(UQ_VOTES_0002, ["run_id", "user", "decision"])
    # The older bot cannot read a run in `waiting`: finish or cancel such runs before going down.
    _active_instance_index(ACTIVE_STATES_WHERE_0002)


def _active_instance_index(where: str) -> None:
    op.drop_index("ux_runs_active_instance", table_name="runs")
    op.create_index(
        "ux_runs_active_instance",
        "runs",
        ["instance_key"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )
