"""Readiness of the bot's database (`/readyz`): it answers at the schema this code needs, and some
process holds the scheduling lease.

`SqlProbe` opens a connection of its own for each check (a probe every few seconds costs little,
and so a check says whether a new connection can be made now, not whether an old one survives).
PostgreSQL gets a connect timeout, so a database that does not answer fails the check instead
of holding it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from adapters.scheduler_lease import SqlLease
from adapters.sql_engine import create_store_engine, describe, masked, store_url
from adapters.sql_schema import check_schema
from bot.domain.errors import OperationalError, StoreUnavailable
from bot.domain.ports import Clock

CONNECT_TIMEOUT_SECONDS = 3


class SchedulerStopped(OperationalError):
    """No process has held the scheduling lease for longer than a takeover takes."""


class SqlProbe:
    """Whether the database at `url` answers and is at the schema this code was written for."""

    def __init__(self, url: str | URL) -> None:
        parsed = store_url(url)
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_SECONDS)})
        self._url = parsed

    def check(self) -> str:
        """A few words on the database; raises `StoreUnavailable` when it does not answer and
        `StoreOutdated` when its schema is behind (or ahead of) this code."""
        engine = create_store_engine(self._url)
        try:
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            except SQLAlchemyError as exc:
                raise StoreUnavailable(
                    f"The database {masked(self._url)} does not answer: {describe(exc, self._url)}"
                ) from exc
            check_schema(engine)
        finally:
            engine.dispose()
        return f"{self._url.get_backend_name()} answers, schema up to date"


class LeaseProbe:
    """Whether scheduling goes on: this process holds the lease, or another process's lease is
    current (this one is on standby, ready to take over). A lease that ran out is fine for as long
    as a live process needs to take it over (a third of its length, when it renews).

    With `asked` (when this process last heard whether it holds the lease, None if it does not
    ask), a process that has stopped asking is not ready even while another holds the lease: it
    could not take over."""

    def __init__(
        self,
        lease: SqlLease,
        *,
        clock: Clock,
        length: timedelta,
        asked: Callable[[], datetime | None] | None = None,
    ) -> None:
        self._lease = lease
        self._clock = clock
        self._grace = length / 3 + timedelta(seconds=2)
        self._asked = asked

    def check(self) -> str:
        """Who schedules; raises `SchedulerStopped`, and `StoreUnavailable` when the lease cannot
        be read."""
        if self._asked is not None:
            self._check_asking(self._asked())
        current = self._lease.current()
        if current is None:
            raise SchedulerStopped("No process holds the scheduling lease: nothing schedules.")
        holder, expires_at = current
        mine = holder == self._lease.holder
        late = self._clock.now() - expires_at
        if late < timedelta(0):
            if mine:
                return "this process holds the scheduling lease"
            return f"standby: {holder} holds the scheduling lease"
        lease = "this process's scheduling lease" if mine else f"the scheduling lease of {holder}"
        ago = f"ran out {late.total_seconds():.0f} s ago"
        if late <= self._grace:
            return f"{lease} {ago}; it is being taken over"
        raise SchedulerStopped(
            f"{lease[0].upper()}{lease[1:]} {ago} and no process has taken it over: "
            "nothing schedules."
        )

    def _check_asking(self, asked: datetime | None) -> None:
        if asked is None:
            raise SchedulerStopped(
                "This process has no answer yet on the scheduling lease (its scheduler is "
                "starting, or has stopped): if this lasts, see its log and restart it."
            )
        quiet = self._clock.now() - asked
        if quiet > self._grace:
            raise SchedulerStopped(
                f"This process has not heard about the scheduling lease for "
                f"{quiet.total_seconds():.0f} s, so it could not take over: see its log, and "
                "restart it."
            )
