"""`SqlLease`: which process schedules, decided by one row in the bot's database.

The holder renews the row before it runs out; anyone may take it once it has run out. Taking and
renewing are one INSERT ... ON CONFLICT DO UPDATE ... WHERE statement, so of two processes that
try at once exactly one gets it, on SQLite and PostgreSQL alike (no advisory locks, which SQLite
lacks). Times are this process's clock: hosts sharing a database must keep their clocks in step
(NTP) to well within the lease's length.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import Engine, case, delete, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from adapters.sql_engine import WRITE_OPTION, describe, masked
from adapters.sql_models import SchedulerLeaseRow, UtcDateTime
from bot.domain.errors import StoreUnavailable
from bot.domain.ports import Clock

LEASE = "scheduler"


def holder_name() -> str:
    """Who this process is, in the lease row and in logs: host, pid and a random part (a pid
    can come back after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SqlLease:
    """One named lease in the `scheduler_lease` table."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock,
        length: timedelta,
        holder: str | None = None,
        name: str = LEASE,
    ) -> None:
        self._engine = engine
        self._writes = engine.execution_options(**{WRITE_OPTION: True})
        self._clock = clock
        self._length = length
        self._name = name
        self.holder = holder or holder_name()

    def hold(self) -> datetime | None:
        """Take the lease or renew it. Returns since when this holder has held it, or None when
        another holder's lease has not run out. Raises `StoreUnavailable`."""
        now, row = self._clock.now(), SchedulerLeaseRow
        until = now + self._length
        make = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        insert = make(row).values(name=self._name, holder=self.holder, since=now, expires_at=until)
        mine = row.holder == self.holder
        upsert = insert.on_conflict_do_update(
            index_elements=["name"],
            set_={
                "holder": self.holder,
                "expires_at": until,
                # a renewal keeps the time it was first taken; a takeover starts a new one
                "since": case((mine, row.since), else_=literal(now, UtcDateTime())),
            },
            where=or_(mine, row.expires_at <= literal(now, UtcDateTime())),
        ).returning(row.since)
        with self._failures("taking the scheduling lease"), self._writes.begin() as connection:
            return connection.execute(upsert).scalar_one_or_none()

    def release(self) -> None:
        """Give the lease up (at shutdown), if this holder has it, so another may take it now."""
        gone = delete(SchedulerLeaseRow).where(
            SchedulerLeaseRow.name == self._name, SchedulerLeaseRow.holder == self.holder
        )
        with self._failures("releasing the scheduling lease"), self._writes.begin() as connection:
            connection.execute(gone)

    def current(self) -> tuple[str, datetime] | None:
        """`(holder, expires_at)` as the database has it now."""
        query = select(SchedulerLeaseRow.holder, SchedulerLeaseRow.expires_at).where(
            SchedulerLeaseRow.name == self._name
        )
        with self._failures("reading the scheduling lease"), self._engine.connect() as connection:
            found = connection.execute(query).first()
        return (found[0], found[1]) if found is not None else None

    @contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                f"The database ({masked(self._engine.url)}) failed while {doing}: "
                f"{describe(exc, self._engine.url)}"
            ) from exc
