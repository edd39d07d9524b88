"""Two replicas of the bot on one PostgreSQL: the one running an upgrade is killed mid-step.

Both `python -m bot serve` processes serve Slack (signed requests, the emulator) and share the
database and config; the upgrade runs over real SSH and Docker on the MyST Studio test host. The
process that executes the run is SIGKILLed while `stop.sh` runs. The other must see its claim run
out, say in the thread that the run was interrupted and offer resume or rollback; an approver's
click on *Roll back* then undoes the run there, and no step runs twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from adapters.sql_engine import create_store_engine
from adapters.sql_store import SqlRunStore, upgrade_schema
from bot.domain.run import Phase, RunState, StepStatus
from bot.engine.runner import IN_DOUBT
from bot.slack.blocks_report import RESUME_ACTION, ROLLBACK_ACTION
from tests.hostkit.botprocess import Served, serve, wait_healthy
from tests.hostkit.databases import postgres_schema
from tests.hostkit.deployment import START_VERSION, Deployment
from tests.hostkit.faults import ScriptSwitches, settle
from tests.hostkit.services import Services
from tests.hostkit.slackbot import ALICE, BOB, CHANNEL, text_of, wait_for
from tests.slackemu import requests as slack
from tests.slackemu.server import SlackEmulator

pytestmark = pytest.mark.services

CLAIM = "2s"  # the config's lease: a dead process's run is taken over within a few seconds


@pytest.fixture
def database(services: Services) -> Iterator[str]:
    with postgres_schema(services, "replicas") as url:
        upgrade_schema(url)
        yield url


@pytest.fixture
def replicas(
    myst_deployment: Deployment, slack_api: SlackEmulator, database: str, tmp_path: Path
) -> Iterator[tuple[Served, Served]]:
    config = yaml.safe_load(myst_deployment.config_file.read_text())
    config["schedule"] = {"lease": CLAIM}
    myst_deployment.config_file.write_text(yaml.safe_dump(config))
    pair = tuple(
        serve(
            name,
            tmp_path,
            config=myst_deployment.config_file,
            database=database,
            slack_url=slack_api.url,
        )
        for name in ("replica-a", "replica-b")
    )
    try:
        wait_healthy(*pair)
        yield pair  # type: ignore[misc]
    finally:
        for served in pair:
            served.stop()


def _thread(slack_api: SlackEmulator, plan_ts: str) -> list[Any]:
    return slack_api.threads(CHANNEL).get(plan_ts, [])


def _holder(database: str, run_id: int) -> str | None:
    engine = create_store_engine(database)
    try:
        with engine.connect() as connection:
            query = text("SELECT holder FROM runs WHERE id = :id")
            return connection.execute(query, {"id": run_id}).scalar_one()
    finally:
        engine.dispose()


def test_the_survivor_takes_over_a_killed_replica_s_run_and_rolls_it_back_on_request(
    myst_deployment: Deployment,
    replicas: tuple[Served, Served],
    slack_api: SlackEmulator,
    database: str,
) -> None:
    host = myst_deployment.host
    before = host.database()
    switches = ScriptSwitches.of_myst(host.home).install()
    switches.hold("stop")
    asked, runner = replicas

    assert (
        asked.sender().send(*slack.slash_command("myst 3.9.1 env=prod", ALICE, CHANNEL))[0] == 200
    )
    plan = wait_for(
        "the plan",
        lambda: [m for m in slack_api.messages(CHANNEL) if "Upgrade plan" in text_of(m)],
    )[-1]
    store = SqlRunStore(database)
    [run] = store.runs(limit=1)
    wait_for("the run's thread to be kept", lambda: store.thread(run.id))
    # bob approves through the other replica: that one executes the run
    reaction = slack.reaction_added(
        BOB, "white_check_mark", CHANNEL, plan.ts, f"Ev{time.time_ns()}"
    )
    assert runner.sender().send(*reaction)[0] == 200
    assert switches.wait_held("stop", 60), runner.text()
    assert f":{runner.process.pid}:" in (_holder(database, run.id) or "")

    runner.kill()  # mid-step: stop.sh is parked at its start
    switches.release("stop")  # it goes on, orphaned; its outcome is not the bot's to know
    settle(host.user.pw_uid, (str(host.home),))

    notice = wait_for(
        "the survivor to say the run was interrupted",
        lambda: [m for m in _thread(slack_api, plan.ts) if "was interrupted" in text_of(m)],
    )[-1]
    said = text_of(notice)
    assert "step 4 `stop`" in said
    actions = {
        e["action_id"] for b in notice.blocks if b["type"] == "actions" for e in b["elements"]
    }
    assert actions == {RESUME_ACTION, ROLLBACK_ACTION}
    assert store.get(run.id).state is RunState.INTERRUPTED
    assert f":{asked.process.pid}:" in store.events(run.id)[-1].actor

    click = slack.block_action(BOB, ROLLBACK_ACTION, str(run.id), CHANNEL, notice.ts)
    assert asked.sender().send(*click)[0] == 200
    wait_for(
        "the rollback to end",
        lambda: store.get(run.id).state in (RunState.ROLLED_BACK, RunState.ROLLBACK_FAILED),
        timeout=120,
    )
    steps = store.steps(run.id)
    assert store.get(run.id).state is RunState.ROLLED_BACK, [(s.step_id, s.error) for s in steps]

    # every step once: the one in doubt closed as such, none of them run again
    upgrade = [(s.step_id, s.status) for s in steps if s.phase is Phase.UPGRADE]
    assert upgrade == [
        ("pull", StepStatus.SUCCEEDED),
        ("backup", StepStatus.SUCCEEDED),
        ("check-backup", StepStatus.SUCCEEDED),
        ("stop", StepStatus.FAILED),
    ]
    assert next(s for s in steps if s.step_id == "stop").error == IN_DOUBT
    assert len(host.backups()) == 1  # backup-database.sh ran once
    moves = [e.to_state for e in store.events(run.id)]
    assert moves.count(RunState.RUNNING) == 1
    assert moves[-3:] == [RunState.INTERRUPTED, RunState.ROLLING_BACK, RunState.ROLLED_BACK]
    assert [s.step_id for s in steps if s.phase is Phase.ROLLBACK] == [
        "retag-previous",
        "restore-database",
        "rollback-startup-log",
        "rollback-console",
    ]
    # back on the old version with the old data, and the thread says so
    assert host.running_version() == START_VERSION
    assert host.console_version() == START_VERSION
    assert host.database() == before
    wait_for(
        "the summary",
        lambda: [m for m in _thread(slack_api, plan.ts) if "rolled back" in text_of(m).lower()],
    )
    store.close()
