"""The MyST Studio upgrade asked for in Slack, run over real SSH and Docker, kept in PostgreSQL."""

from __future__ import annotations

import pytest

from adapters.sql_store import SqlRunStore, upgrade_schema
from bot.domain.run import RunState
from tests.hostkit.databases import postgres_schema
from tests.hostkit.deployment import START_VERSION, Deployment
from tests.hostkit.slackbot import BOB, text_of, wait_for

pytestmark = pytest.mark.services


def test_upgrade_requested_approved_and_reported_in_slack(
    myst_deployment: Deployment, slack_bot_factory, services
):
    host = myst_deployment.host
    with postgres_schema(services, "slack_e2e") as url:
        upgrade_schema(url)
        store = SqlRunStore(url)
        bot = slack_bot_factory(myst_deployment.config(), store=store, database_url=url)

        status, _body = bot.command("myst 3.9.1 env=prod")
        assert status == 200
        plan = wait_for("the plan", lambda: bot.plan_messages())[-1]
        assert f"{START_VERSION}" in text_of(plan)
        assert bot.react(BOB, "white_check_mark", plan.ts) == 200

        summary = wait_for(
            "the summary", lambda: [m for m in bot.thread(plan.ts) if m.reply_broadcast], timeout=90
        )[-1]
        text = text_of(summary)
        [run] = store.runs(limit=1)
        assert run.state is RunState.SUCCEEDED, text
        backup = next(
            s.captures["backup_path"] for s in store.steps(run.id) if "backup_path" in s.captures
        )
        assert backup in text
        assert any(str(p) == backup for p in host.backups())
        assert "MyST Studio 3.9.1 started" in text
        assert "console_version is 3.9.1" in text
        assert host.running_version() == "3.9.1"
        store.close()
