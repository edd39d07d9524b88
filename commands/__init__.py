"""The chat grammar: `/upgrade ...` text into commands (grows with the Slack surface)."""
