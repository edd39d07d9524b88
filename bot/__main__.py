"""The command line: `python -m bot check|plan|db upgrade`."""

from bot.cli import main

raise SystemExit(main())
