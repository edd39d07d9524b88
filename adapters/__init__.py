"""One module per technology, each implementing ports of `bot.domain.ports`."""
