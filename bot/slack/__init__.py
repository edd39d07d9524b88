"""The Slack surface: Block Kit renderings of the conversation's views."""
