"""The composition root: the only place that builds real adapters and hands them down."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.socket_mode.builtin.client import SocketModeClient

from adapters.clock import SystemClock
from adapters.docker_engine import DockerConnector
from adapters.http_check import RequestsHttpCheck
from adapters.local import LocalShell
from adapters.memory.scheduler import MemoryScheduler
from adapters.prometheus_metrics import PrometheusMetrics
from adapters.registry import RegistryHttp
from adapters.sandbox import FileHttpCheck, SandboxConnector, SandboxRegistry
from adapters.scheduler import ApsScheduler
from adapters.slack_probe import SlackAuthProbe, SocketModeProbe
from adapters.sql_probe import LeaseProbe, SqlProbe
from adapters.sql_store import SqlRunStore, upgrade_schema
from adapters.ssh import ParamikoConnector
from adapters.ssh_pool import KeptConnections
from bot.config import Config, Settings, load_config
from bot.console.chat import ConsoleChat
from bot.console.session import NoDirectory
from bot.domain.errors import UserError
from bot.domain.ports import Directory, Scheduler
from bot.domain.redaction import Redactor
from bot.engine.planning import Planner
from bot.engine.recovery import ClaimKeeper
from bot.engine.runner import RunObserver
from bot.engine.scheduling import Scheduling
from bot.engine.service import Store, UpgradeService
from bot.engine.session import Ports
from bot.logs import RunLog
from bot.slack.app import build_app
from bot.slack.chat import SlackChat, SlackDirectory, slack_client
from bot.workers import Foreground, WorkerPool
from commands.chat import Chat
from commands.conversation import Conversation

TASK_WORKERS, TASK_QUEUE = 8, 200
RUN_WORKERS, RUN_QUEUE = 4, 50
PROBE_TIMEOUT_SECONDS = 5  # a readiness probe's Web API call: well under a probe's own timeout


def build_ports() -> Ports:
    return Ports(
        ssh=KeptConnections(ParamikoConnector()),
        # sandbox:// and file:// endpoints are folders on this machine (the demo); the rest real
        docker=SandboxConnector(fallback=DockerConnector()),
        registry=SandboxRegistry(fallback=RegistryHttp()),
        http=FileHttpCheck(fallback=RequestsHttpCheck()),
        clock=SystemClock(),
        local_shell=LocalShell,
    )


def config_path(settings: Settings, given: Path | None) -> Path:
    path = given or settings.bot_config
    if path is None:
        raise UserError(
            "The bot has no config file.",
            "Set BOT_CONFIG to its path or pass --config PATH "
            "(deploy/example-config.yaml shows the form).",
        )
    return path


def load(settings: Settings, config_file: Path | None = None) -> Config:
    return load_config(config_path(settings, config_file))


def planner(config: Config, ports: Ports) -> Planner:
    return Planner(config.catalog, config.inventory, ports)


def migrate(settings: Settings) -> str:
    """Bring the bot's database to the newest schema; returns the revision reached."""
    return upgrade_schema(settings.database_url)


def scheduler(settings: Settings, config: Config) -> ApsScheduler:
    """The real scheduler on the bot's database (started by `serve` or the console)."""
    return ApsScheduler(settings.database_url, lease=config.schedule.lease)


def redactor(settings: Settings, config: Config) -> Redactor:
    """Everything the bot knows to be secret, so no message or log line can carry it."""
    secrets = [
        s.get_secret_value()
        for s in (settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token)
        if s
    ]
    secrets += [
        i.registry.password
        for i in config.inventory.instances()
        if i.registry and i.registry.password
    ]
    return Redactor(secrets)


@dataclass
class Bot:
    """A running bot's parts, built once; `close` releases them."""

    service: UpgradeService
    conversation: Conversation
    tasks: WorkerPool
    runs: WorkerPool
    store: Store
    app: App | None  # None on a terminal
    scheduling: Scheduling
    claims: ClaimKeeper  # started by `serve` and the console: renews and takes over claims
    ports: Ports
    metrics: PrometheusMetrics | None = None  # served at /metrics by `serve`
    foreground: Foreground | None = None  # Slack's requests in flight, which tasks wait out

    def close(self) -> None:
        self.claims.stop()
        self.tasks.shutdown(wait=False)
        self.runs.shutdown(wait=True)
        self.ports.ssh.close()  # after the runs: they hand their connections back


def claim_keeper(config: Config, store: Store, conversation: Conversation) -> ClaimKeeper:
    """Beats three times per claim length, so a claim survives a missed beat or two."""
    return ClaimKeeper(
        store,
        conversation.service.clock,
        interval=config.schedule.lease.total_seconds() / 3,
        on_interrupted=conversation.tell_interrupted,
    )


def build_conversation(
    config: Config,
    *,
    ports: Ports,
    store: Store,
    chat: Chat,
    directory: Directory,
    scheduler: Scheduler | None = None,
    progress_interval: float = 1.5,
    watchers: tuple[RunObserver, ...] = (),
    foreground: Foreground | None = None,
) -> tuple[UpgradeService, Conversation, WorkerPool, WorkerPool]:
    """The service and the conversation over it. Without a `scheduler`, scheduled runs are kept
    by an in-memory one that nothing drives (a terminal session that schedules nothing). With a
    `foreground`, the task pool's work waits for the requests it names to be answered."""
    service = UpgradeService(
        catalog=config.catalog,
        inventory=config.inventory,
        ports=ports,
        store=store,
        directory=directory,
        watchers=watchers,
    )
    scheduling = Scheduling(
        service, scheduler or MemoryScheduler(ports.clock), config.schedule, directory
    )
    tasks = WorkerPool("tasks", workers=TASK_WORKERS, queue=TASK_QUEUE, foreground=foreground)
    runs = WorkerPool("runs", workers=RUN_WORKERS, queue=RUN_QUEUE)
    conversation = Conversation(
        service,
        chat,
        runs,
        scheduling=scheduling,
        monotonic=time.monotonic,
        progress_interval=progress_interval,
    )
    return service, conversation, tasks, runs


def sql_store(url: str, config: Config, *, migrate: bool = False) -> SqlRunStore:
    """The bot's database; its claims on running runs last as long as the scheduling lease."""
    if migrate:
        upgrade_schema(url)
    return SqlRunStore(url, claim=config.schedule.lease)


def build_console_bot(
    config: Config,
    *,
    console: Console,
    store: Store,
    ports: Ports | None = None,
    scheduler: Scheduler | None = None,
) -> Bot:
    """The conversation on a terminal (console and demo): no Slack, progress shown at once."""
    ports = ports or build_ports()
    service, conversation, tasks, runs = build_conversation(
        config,
        ports=ports,
        store=store,
        chat=ConsoleChat(console),
        directory=NoDirectory(),
        scheduler=scheduler,
        progress_interval=0.0,
    )
    return Bot(
        service=service,
        conversation=conversation,
        tasks=tasks,
        runs=runs,
        store=store,
        app=None,
        scheduling=conversation.scheduling,
        claims=claim_keeper(config, store, conversation),
        ports=ports,
    )


def build_slack_bot(
    settings: Settings,
    config: Config,
    *,
    ports: Ports | None = None,
    store: Store | None = None,
    scheduler: Scheduler | None = None,
    verify_token: bool = True,
    progress_interval: float = 1.5,
) -> Bot:
    """The Slack bot: Bolt app, conversation, pools, store. Tests may pass their own ports,
    store and scheduler (`serve` passes the real scheduler and starts it)."""
    if settings.slack_bot_token is None or settings.slack_signing_secret is None:
        raise UserError(
            "Slack needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET.",
            "Set both (see README: Install in Slack).",
        )
    client = slack_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url)
    ports = ports or build_ports()
    store = store if store is not None else sql_store(settings.database_url, config)
    metrics = PrometheusMetrics(store, lease_since=scheduler.on_duty_since if scheduler else None)
    foreground = Foreground()
    service, conversation, tasks, runs = build_conversation(
        config,
        ports=ports,
        store=store,
        chat=SlackChat(client, redactor(settings, config), on_error=metrics.slack_error),
        directory=SlackDirectory(client, on_error=metrics.slack_error),
        scheduler=scheduler,
        progress_interval=progress_interval,
        watchers=(metrics, RunLog()),
        foreground=foreground,
    )
    app = build_app(
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        conversation=conversation,
        tasks=tasks,
        verify_token=verify_token,
    )
    return Bot(
        service=service,
        conversation=conversation,
        tasks=tasks,
        runs=runs,
        store=store,
        app=app,
        scheduling=conversation.scheduling,
        claims=claim_keeper(config, store, conversation),
        ports=ports,
        metrics=metrics,
        foreground=foreground,
    )


def readiness_probes(
    settings: Settings,
    config: Config,
    scheduler: ApsScheduler,
    *,
    socket_mode: SocketModeClient | None = None,
) -> dict[str, Callable[[], str]]:
    """What /readyz checks: the database, the scheduler and Slack (the Socket Mode link when
    given, else whether Slack takes the bot token). Each says in a few words what is fine, or
    raises an `OperationalError` saying what is not."""
    if socket_mode is not None:
        slack = SocketModeProbe(socket_mode).check
    else:
        assert settings.slack_bot_token is not None, "a Slack bot has its token"
        client = WebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            timeout=PROBE_TIMEOUT_SECONDS,
        )
        slack = SlackAuthProbe(client).check
    lease = LeaseProbe(
        scheduler.lease,
        clock=SystemClock(),
        length=config.schedule.lease,
        asked=scheduler.lease_asked,
    )
    return {
        "database": SqlProbe(settings.database_url).check,
        "scheduler": lease.check,
        "slack": slack,
    }
