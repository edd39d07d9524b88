"""Shared fixtures. The real services are started once per session; a missing one fails the run."""

from __future__ import annotations

import pytest

from tests.hostkit import services as _services

# The test hosts' fixtures: sshd servers (ssh_server, ssh_server_module) and MyST Studio hosts
# (myst_images, myst_host_factory, myst_host), and the two together behind a bot config
# (myst_deployment); empty databases on SQLite and PostgreSQL (fresh_url); the Slack Web API
# emulator (slack_api), and the bot served over HTTP against it (slack_bot_factory).
pytest_plugins = (
    "tests.hostkit.sshd",
    "tests.hostkit.myst",
    "tests.hostkit.proxy",
    "tests.hostkit.stackstorm",
    "tests.hostkit.deployment",
    "tests.hostkit.st2_deployment",
    "tests.hostkit.databases",
    "tests.slackemu.server",
    "tests.hostkit.slackbot",
)


@pytest.fixture(scope="session")
def services() -> _services.Services:
    """dockerd, the registry and PostgreSQL, started if they are not up yet."""
    return _services.up()
