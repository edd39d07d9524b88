"""`python -m bot demo`: the whole conversation of `/upgrade myst 3.9.1`, played in a terminal.

No Slack, no Docker, no network: a sandbox MyST Studio in a temporary folder (driven through the
local shell and the sandbox adapters), SQLite, and two scripted people: alice asks, bob approves.
Exits 0 when the upgrade ends verified.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

from bot import wiring
from bot.config import load_config
from bot.console.session import ConsoleSession
from bot.domain.run import RunState
from bot.sandbox import create_sandbox

SCRIPT = (("alice", "/upgrade myst 3.9.1"), ("bob", "approve 1"))


def run_demo(console: Console) -> int:
    with tempfile.TemporaryDirectory(prefix="upgrade-bot-demo-") as folder:
        config = load_config(create_sandbox(Path(folder) / "sandbox"))
        store = wiring.sql_store(f"sqlite:///{folder}/bot.db", config, migrate=True)
        bot = wiring.build_console_bot(config, console=console, store=store)
        console.print(
            f"Sandbox MyST Studio 3.9.0.3 in {folder}; alice asks, bob approves.\n",
            markup=False,
            highlight=False,
        )
        session = ConsoleSession(bot.conversation, console, user="alice")
        try:
            for user, line in SCRIPT:
                session.user = user
                console.print(f"\n{user}> {line}", markup=False, highlight=False)
                session.handle(line)
        finally:
            bot.close()  # waits for the run to end
        run = store.get(1)
        verified = run.state is RunState.SUCCEEDED
        console.print(
            f"\nDemo {'passed' if verified else 'FAILED'}: run #1 ended {run.state.value}.",
            markup=False,
            highlight=False,
        )
        store.close()
        return 0 if verified else 1
