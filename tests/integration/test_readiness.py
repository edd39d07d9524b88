"""The readiness probes against the real things: the database on SQLite and PostgreSQL, the
scheduling lease in it, Slack's `auth.test` and a Socket Mode link (the emulator's); and /readyz
and /metrics served by the bot's WSGI app on a real waitress server."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import waitress
from alembic.script import ScriptDirectory
from slack_sdk import WebClient
from slack_sdk.socket_mode.builtin.client import SocketModeClient
from sqlalchemy import Engine, text

from adapters.memory.clock import FakeClock
from adapters.memory.store import MemoryRunStore
from adapters.prometheus_metrics import PrometheusMetrics
from adapters.scheduler import ApsScheduler
from adapters.scheduler_lease import SqlLease
from adapters.slack_probe import SlackAuthProbe, SlackNotConnected, SocketModeProbe
from adapters.sql_engine import create_store_engine
from adapters.sql_probe import LeaseProbe, SchedulerStopped, SqlProbe
from adapters.sql_schema import alembic_config, upgrade_schema
from adapters.sql_store import SqlRunStore
from bot.config import load_config
from bot.domain.errors import StoreOutdated, StoreUnavailable
from bot.domain.redaction import Redactor
from bot.sandbox import create_sandbox
from bot.server import Readiness, http_app
from tests.hostkit.databases import postgres_schema
from tests.hostkit.services import Services, free_port
from tests.hostkit.slackbot import SlackBot, wait_for
from tests.slackemu import requests as slack
from tests.slackemu.server import SlackEmulator

LEASE = timedelta(seconds=30)  # so a takeover is given 30 / 3 + 2 = 12 s


# -- the database ---------------------------------------------------------------------------------


def test_a_database_not_set_up_is_not_ready_and_says_how_to_fix_it(fresh_url: str) -> None:
    with pytest.raises(StoreOutdated, match=r"has not been set up yet\. Run `python -m bot db"):
        SqlProbe(fresh_url).check()
    upgrade_schema(fresh_url)
    backend = "sqlite" if fresh_url.startswith("sqlite") else "postgresql"
    assert SqlProbe(fresh_url).check() == f"{backend} answers, schema up to date"


def test_a_schema_behind_this_code_is_not_ready(fresh_url: str) -> None:
    script = ScriptDirectory.from_config(alembic_config())
    (head,) = script.get_heads()
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    upgrade_schema(fresh_url, previous)
    with pytest.raises(StoreOutdated, match=f"at revision {previous}, but this bot needs {head}"):
        SqlProbe(fresh_url).check()


@pytest.mark.services
def test_a_postgresql_that_does_not_answer_is_named_without_its_password() -> None:
    url = f"postgresql://bot:Sup3rSecretPw@127.0.0.1:{free_port()}/bot"
    with pytest.raises(StoreUnavailable) as failed:
        SqlProbe(url).check()
    assert "does not answer" in str(failed.value)
    assert "127.0.0.1" in str(failed.value)
    assert "Sup3rSecretPw" not in str(failed.value)


# -- the scheduling lease -------------------------------------------------------------------------


@pytest.fixture
def lease_engine(fresh_url: str) -> Iterator[Engine]:
    upgrade_schema(fresh_url)
    engine = create_store_engine(fresh_url)
    yield engine
    engine.dispose()


def test_the_lease_is_ready_when_held_here_or_elsewhere_and_not_when_nobody_takes_it_over(
    lease_engine: Engine,
) -> None:
    clock = FakeClock()
    mine = SqlLease(lease_engine, clock=clock, length=LEASE, holder="bot-a:1:aaaa")
    other = SqlLease(lease_engine, clock=clock, length=LEASE, holder="bot-b:2:bbbb")
    probe = LeaseProbe(mine, clock=clock, length=LEASE)
    with pytest.raises(SchedulerStopped, match="No process holds the scheduling lease"):
        probe.check()

    assert mine.hold() is not None
    assert probe.check() == "this process holds the scheduling lease"
    mine.release()
    assert other.hold() is not None
    assert probe.check() == "standby: bot-b:2:bbbb holds the scheduling lease"

    clock.advance(LEASE.total_seconds() + 5)  # bot-b stopped renewing 5 s ago: a takeover is due
    assert (
        probe.check()
        == "the scheduling lease of bot-b:2:bbbb ran out 5 s ago; it is being taken over"
    )
    clock.advance(10)
    with pytest.raises(SchedulerStopped, match="ran out 15 s ago and no process has taken it over"):
        probe.check()
    assert mine.hold() is not None  # this process took it over
    assert probe.check() == "this process holds the scheduling lease"


def test_a_process_that_stopped_asking_for_the_lease_is_not_ready_even_on_standby(
    lease_engine: Engine,
) -> None:
    clock = FakeClock()
    mine = SqlLease(lease_engine, clock=clock, length=LEASE, holder="bot-a:1:aaaa")
    other = SqlLease(lease_engine, clock=clock, length=LEASE, holder="bot-b:2:bbbb")
    asked: list[datetime | None] = [None]
    probe = LeaseProbe(mine, clock=clock, length=LEASE, asked=lambda: asked[0])
    assert other.hold() is not None
    with pytest.raises(SchedulerStopped, match="has no answer yet on the scheduling lease"):
        probe.check()

    asked[0] = clock.now()
    assert probe.check() == "standby: bot-b:2:bbbb holds the scheduling lease"
    clock.advance(LEASE.total_seconds() / 3 + 3)  # a renewal missed: one more second than allowed
    assert other.hold() is not None
    with pytest.raises(SchedulerStopped, match="has not heard about the scheduling lease for 13 s"):
        probe.check()


class NoWork:
    """Scheduled work for a scheduler that has none due."""

    def start_due(self, run_id: int) -> None:
        raise AssertionError(f"no start is due (run #{run_id})")

    def remind(self, run_id: int, before: timedelta) -> None:
        raise AssertionError(f"no reminder is due (run #{run_id})")

    def behind_latest(self) -> None:
        raise AssertionError("no digest is due")


def test_the_scheduler_says_when_it_last_asked_for_the_lease(fresh_url: str) -> None:
    upgrade_schema(fresh_url)
    scheduler = ApsScheduler(fresh_url, lease=LEASE)
    assert scheduler.lease_asked() is None
    scheduler.start(NoWork())
    try:
        asked = wait_for("the scheduler's first answer", scheduler.lease_asked, timeout=10)
        assert datetime.now(UTC) - asked < LEASE
    finally:
        scheduler.shutdown()
    assert scheduler.lease_asked() is None


# -- Slack ----------------------------------------------------------------------------------------


class Ticks:
    """A monotonic clock moved by hand, for the probe's TTL."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_auth_test_is_asked_once_per_ttl_and_a_refused_token_is_not_ready(
    slack_api: SlackEmulator,
) -> None:
    ticks = Ticks()
    probe = SlackAuthProbe(slack_api.client(), ttl=30, monotonic=ticks)
    assert probe.check().startswith("auth.test: ")
    slack_api.tokens = ()  # the token is revoked
    ticks.now += 29
    assert probe.check().startswith("auth.test: ")  # the answer kept within its TTL
    assert len(slack_api.calls("auth.test")) == 1
    ticks.now += 1
    with pytest.raises(SlackNotConnected) as refused:
        probe.check()
    assert str(refused.value) == "Slack refuses the bot token (auth.test: invalid_auth)."
    with pytest.raises(SlackNotConnected):  # the failure is kept too
        probe.check()
    assert len(slack_api.calls("auth.test")) == 2


def test_a_slack_that_cannot_be_reached_is_not_ready() -> None:
    client = WebClient(
        token="xoxb-never-sent-1234", base_url=f"http://127.0.0.1:{free_port()}/api/"
    )
    with pytest.raises(SlackNotConnected, match=r"Slack cannot be reached \(auth.test: \w+"):
        SlackAuthProbe(client).check()


def test_the_socket_mode_probe_follows_the_link_and_its_pongs(slack_api: SlackEmulator) -> None:
    client = SocketModeClient(
        app_token=slack_api.app_token, web_client=slack_api.client(), ping_interval=0.2
    )
    later = [0.0]
    probe = SocketModeProbe(client, clock=lambda: time.time() + later[0])
    try:
        with pytest.raises(SlackNotConnected, match="Socket Mode link to Slack is down"):
            probe.check()
        client.connect()
        wait_for("the link", lambda: slack_api.socket_mode.link)
        session = client.current_session
        assert session is not None
        wait_for("a pong", lambda: session.last_ping_pong_time)
        assert probe.check() == "Socket Mode connected"
        later[0] = 5.0  # as if the pongs had stopped 5 s ago: 3 pings 0.2 s apart went unanswered
        with pytest.raises(SlackNotConnected, match=r"has not answered a ping for [45] s"):
            probe.check()
        later[0] = 0.0
    finally:
        client.close()
    with pytest.raises(SlackNotConnected, match="is down"):
        probe.check()


# -- served ---------------------------------------------------------------------------------------


@pytest.fixture
def ops_server(slack_bot_factory, tmp_path: Path) -> Iterator[tuple[SlackBot, str, Readiness]]:
    """A Slack bot on a sandbox, and its WSGI app with readiness on a second waitress server."""
    database = f"sqlite:///{tmp_path / 'bot.db'}"
    upgrade_schema(database)
    config = load_config(create_sandbox(tmp_path / "sandbox"))
    bot = slack_bot_factory(config, store=MemoryRunStore(), database_url=database)
    secret = bot.emulator.token

    def broken() -> str:
        raise RuntimeError(f"a bug that shows {secret}")

    def leaky() -> str:
        return f"fine, with {secret} in its words"

    readiness = Readiness(
        {"database": SqlProbe(database).check, "leaky": leaky, "broken": broken},
        Redactor([secret]),
    )
    server = waitress.create_server(
        http_app(bot.bot, readiness), host="127.0.0.1", port=0, threads=2
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield bot, f"http://127.0.0.1:{server.effective_port}", readiness
    server.close()
    thread.join(timeout=5)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers["Content-Type"], refused.read().decode()


def test_readyz_names_what_is_not_ready_in_short_redacted_json(
    ops_server: tuple[SlackBot, str, Readiness], caplog: pytest.LogCaptureFixture
) -> None:
    bot, base, _ = ops_server
    with caplog.at_level(logging.ERROR, logger="bot.server"):
        status, kind, body = _get(f"{base}/readyz")
    assert (status, kind) == (503, "application/json; charset=utf-8")
    answer = json.loads(body)
    assert answer["status"] == "not ready"
    assert answer["not_ready"] == ["broken"]
    assert answer["checks"]["database"] == {
        "ok": True,
        "detail": "sqlite answers, schema up to date",
    }
    assert answer["checks"]["leaky"] == {"ok": True, "detail": "fine, with [redacted] in its words"}
    assert answer["checks"]["broken"] == {
        "ok": False,
        "detail": "the check failed (see the bot's log)",
    }
    assert bot.emulator.token not in body
    assert "a bug that shows" in caplog.text  # the bug is in the log, with its trace
    assert _get(f"{base}/healthz")[:2] == (200, "text/plain; charset=utf-8")
    assert _get(f"{base}/nowhere")[0] == 404


def test_metrics_are_served_beside_slack_and_count_failed_slack_calls(
    ops_server: tuple[SlackBot, str, Readiness],
) -> None:
    bot, base, _ = ops_server
    # X... is no channel: the reply (and the apology for it) are refused as channel_not_found.
    status, _, _ = bot.sender.send(*slack.slash_command("help", "U0ALICE01", "X0NOWHERE"))
    assert status == 200
    errors = (
        'upgradebot_slack_api_errors_total{error="channel_not_found",method="chat.postEphemeral"}'
    )

    def refused() -> int:
        return sum(not call.ok for call in bot.emulator.calls("chat.postEphemeral"))

    def counted() -> float:
        found = re.search(re.escape(errors) + r" (\S+)", _get(f"{base}/metrics")[2])
        return float(found.group(1)) if found else 0.0

    wait_for("the refused calls to be counted", lambda: refused() and counted() == refused())
    status, kind, text_format = _get(f"{base}/metrics")
    assert status == 200
    assert kind.startswith("text/plain; version=")
    assert 'upgradebot_approvals_waiting{stage="plan"} 0.0' in text_format
    assert "upgradebot_scheduler_lease_held" not in text_format  # this bot has no scheduler


@pytest.mark.services
def test_a_scrape_while_the_database_fails_still_answers_without_the_open_runs(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    with postgres_schema(services, prefix="metrics") as url:
        upgrade_schema(url)
        store = SqlRunStore(url)
        metrics = PrometheusMetrics(store)
        assert (
            metrics.registry.get_sample_value("upgradebot_approvals_waiting", {"stage": "plan"})
            == 0
        )
        engine = create_store_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE runs CASCADE"))
        engine.dispose()
        with caplog.at_level(logging.WARNING, logger="adapters.prometheus_metrics"):
            names = {family.name for family in metrics.registry.collect()}
        store.close()
    assert "upgradebot_approvals_waiting" not in names
    assert {"upgradebot_runs_finished", "process_resident_memory_bytes"} <= names
    assert "the open runs could not be read" in caplog.text
