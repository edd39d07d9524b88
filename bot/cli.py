"""Command-line entry points. Errors reach the operator as sentences, with a reference for bugs."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from bot import wiring
from bot.config import Settings, load_config
from bot.console.session import ConsoleSession
from bot.demo import run_demo
from bot.domain.errors import ConfigError, OperationalError, SafetyRefusal, UserError
from bot.engine.planning import UpgradeRequest
from bot.engine.preflight import preflight
from bot.logs import LOG_FORMATS
from bot.sandbox import create_sandbox
from bot.server import serve
from commands.text import findings_text, plan_text

log = logging.getLogger("bot")

SANDBOX = Path("var/sandbox")
EXIT_FAILED = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    parser.add_argument("--config", type=Path, help="config file (default: $BOT_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="validate the config and runbooks")
    check.add_argument(
        "--connect",
        action="store_true",
        help="also reach every instance over SSH, Docker, registry and console",
    )

    plan = sub.add_parser("plan", help="print the plan for an upgrade without running anything")
    plan.add_argument("product")
    plan.add_argument("version")
    plan.add_argument("--env", dest="environment")
    plan.add_argument("--instance")
    plan.add_argument("--strategy")
    plan.add_argument("--allow-downgrade", action="store_true")

    serve = sub.add_parser(
        "serve", help="run the Slack bot (Socket Mode if SLACK_APP_TOKEN is set)"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=3000,
        help="port of /healthz, /readyz, /metrics and, in HTTP mode, /slack/events (default 3000)",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="json",
        help="json: one JSON object per line, for log collectors (default); text: for people",
    )

    sub.add_parser("console", help="the Slack conversation in this terminal (no Slack needed)")
    sub.add_parser("demo", help="play a whole upgrade on a sandbox: no Slack, Docker or network")
    sandbox = sub.add_parser("sandbox", help="lay out a sandbox MyST Studio and print its config")
    sandbox.add_argument(
        "folder",
        type=Path,
        nargs="?",
        default=SANDBOX,
        help=f"where (default {SANDBOX}; must be empty or new)",
    )

    db = sub.add_parser("db", help="the bot's own database")
    db.add_argument("action", choices=["upgrade"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    try:
        return _dispatch(args, settings)
    except ConfigError as exc:
        print(f"The configuration has {len(exc.problems)} problem(s):", file=sys.stderr)
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OperationalError, SafetyRefusal) as exc:
        print(f"failed: {exc}", file=sys.stderr)
        result = getattr(exc, "result", None)
        if result is not None and result.tail():
            print("output tail:\n" + result.tail(), file=sys.stderr)
        return EXIT_FAILED
    except Exception:
        reference = uuid.uuid4().hex[:8]
        log.exception("unexpected error (reference %s)", reference)
        print(
            f"Sorry, something went wrong inside the bot (reference {reference}).", file=sys.stderr
        )
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "db":
        revision = wiring.migrate(settings)
        print(f"The database is at revision {revision}.")
        return 0
    if args.command == "demo":
        return run_demo(Console())
    if args.command == "sandbox":
        written = create_sandbox(args.folder)
        print(f"Sandbox MyST Studio laid out in {args.folder}.")
        print(f"Use it with: BOT_CONFIG={written} python -m bot console   (or serve)")
        return 0
    if args.command == "console":
        return console(settings, args.config)
    config = wiring.load(settings, args.config)
    if args.command == "serve":
        return serve(settings, config, port=args.port, host=args.host, log_format=args.log_format)
    if args.command == "check":
        inventory = config.inventory
        print(
            f"{config.source}: {len(inventory.environments)} environment(s), "
            f"{len(inventory.instances())} instance(s), "
            f"{len(config.catalog.runbooks)} runbook(s): valid."
        )
        if not args.connect:
            return 0
        findings = preflight(config.catalog, inventory, wiring.build_ports())
        print(findings_text(findings))
        return 0 if all(f.ok for f in findings) else EXIT_FAILED
    request = UpgradeRequest(
        product=args.product,
        version=args.version,
        environment=args.environment,
        instance=args.instance,
        strategy=args.strategy,
        allow_downgrade=args.allow_downgrade,
    )
    print(plan_text(wiring.planner(config, wiring.build_ports()).build(request)))
    print("Nothing was run: this is the plan only.")
    return 0


def console(settings: Settings, config_file: Path | None) -> int:
    """The conversation in this terminal, on the config given or else on a local sandbox."""
    path = config_file or settings.bot_config
    if path is None:
        path = SANDBOX / "config.yaml"
        if not path.exists():
            create_sandbox(SANDBOX)
        print(f"No BOT_CONFIG: using the sandbox MyST Studio in {SANDBOX}.")
    config = load_config(path)
    store = wiring.sql_store(settings.database_url, config, migrate=True)
    scheduler = wiring.scheduler(settings, config)  # scheduled runs start while it runs
    bot = wiring.build_console_bot(config, console=Console(), store=store, scheduler=scheduler)
    bot.claims.start()  # runs another process left behind are said, and take-overs kept
    scheduler.start(bot.conversation, on_duty=bot.scheduling.reschedule)
    try:
        return ConsoleSession(bot.conversation, Console(), user=getpass.getuser()).loop()
    finally:
        scheduler.shutdown()
        bot.close()
