"""Pre-flight: can the bot reach every instance the way its runbook needs? Changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bot.domain.errors import BotError
from bot.domain.inventory import Instance, Inventory
from bot.domain.runbook import Catalog, Runbook
from bot.engine.planning import Planner
from bot.engine.session import InstanceSession, Ports

PARALLEL_INSTANCES = 8
PROBE_TIMEOUT = 30.0


@dataclass(frozen=True, kw_only=True)
class Finding:
    instance: str  # environment/name
    check: str
    ok: bool
    detail: str


def preflight(catalog: Catalog, inventory: Inventory, ports: Ports) -> list[Finding]:
    """Reach every instance (several at once) and report each way in that works or fails."""
    planner = Planner(catalog, inventory, ports)

    def check(instance: Instance) -> list[Finding]:
        return _check_instance(instance, catalog.find(instance.product), planner, ports)

    with ThreadPoolExecutor(max_workers=PARALLEL_INSTANCES) as pool:
        return [f for findings in pool.map(check, inventory.instances()) for f in findings]


def _check_instance(
    instance: Instance, runbook: Runbook, planner: Planner, ports: Ports
) -> list[Finding]:
    findings: list[Finding] = []

    def attempt(check: str, probe: Callable[[], str]) -> None:
        try:
            detail, ok = probe(), True
        except BotError as exc:
            detail, ok = str(exc), False
        findings.append(Finding(instance=instance.key, check=check, ok=ok, detail=detail))

    with InstanceSession(instance, ports) as session:

        def shell() -> str:
            result = session.shell().run("true", timeout=PROBE_TIMEOUT)
            return f"{result.host} answers ({result.duration * 1000:.0f} ms)"

        def docker() -> str:
            session.engine()
            return f"the Docker Engine at {instance.docker.url if instance.docker else ''} answers"

        attempt("shell", shell)
        if instance.docker is not None:
            attempt("docker", docker)

    def registry() -> str:
        versions = planner.available_versions(runbook, instance)
        newest = versions[-1].text if versions else "none"
        return f"{len(versions)} versions of {instance.image}, newest {newest}"

    def console() -> str:
        page = ports.http.get(instance.console_url, timeout=PROBE_TIMEOUT)
        return f"{instance.console_url} answered {page.status}"

    if runbook.versions.kind == "registry":
        attempt("registry", registry)
    attempt("version", lambda: f"runs {planner.detect(runbook, instance)}")
    if instance.console_url:
        attempt("console", console)
    return findings
