"""Slack, emulated for tests: a local Web API (`server`) and signed requests in Slack's formats
(`requests`). Slack itself cannot be reached from the test machines; these tools stand in for it.

Use the `slack_api` fixture (`pytest_plugins = ("tests.slackemu.server",)`) or `SlackEmulator`
directly, and `SlackSender` with the builders of `tests.slackemu.requests` to drive the bot.
"""
