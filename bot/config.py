"""Settings: the environment variables and the one YAML config file, validated once at start.

The config file names the environments, their instances, how to reach each one, and the approval
policy. Relative paths in it are relative to the file. Secrets are never written in it: a
registry password is named by the environment variable that holds it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot import config_schedule as cs
from bot.domain import inventory as inv
from bot.domain import schedule as sched
from bot.domain.errors import (
    ConfigError,
    ConfigProblem,
    UnknownEnvironment,
    UnknownInstance,
    UnknownProduct,
)
from bot.domain.runbook import Catalog, Runbook, missing_values, needed_values
from bot.durations import Duration, DurationOrZero
from bot.runbooks import BUNDLED, load_runbooks
from bot.yamlfile import YamlDocument, load, problems_from

DEFAULT_DATABASE_URL = "sqlite:///var/bot.db"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Settings(BaseSettings):
    """The environment variables the bot reads (names are the stable interface)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    database_url: str = DEFAULT_DATABASE_URL
    bot_config: Path | None = None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SshSpec(_Model):
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    user: str
    key: Path
    known_hosts: Path
    connect_timeout: Duration = 10.0
    keep_open: DurationOrZero = 60.0


class TlsSpec(_Model):
    ca: Path
    cert: Path
    key: Path


class DockerSpec(_Model):
    url: str
    tls: TlsSpec | None = None
    timeout: Duration = 60.0

    @model_validator(mode="after")
    def _safe_endpoint(self) -> DockerSpec:
        parts = urlsplit(self.url)
        if parts.scheme == "sandbox":
            if parts.netloc or not parts.path.startswith("/") or self.tls is not None:
                raise ValueError(
                    "a sandbox engine is a folder on the bot's machine: write it as "
                    "sandbox:///absolute/path, without `tls:`"
                )
            return self
        if parts.scheme not in {"unix", "tcp"}:
            raise ValueError("the Docker url must start with unix://, tcp:// or sandbox://")
        if parts.scheme == "tcp" and self.tls is None and not _is_loopback(parts.hostname or ""):
            raise ValueError(
                "a tcp:// Docker endpoint off this machine needs `tls:` (ca, cert, key): "
                "plain TCP would hand the engine to anyone on the network"
            )
        return self


class RegistrySpec(_Model):
    url: str
    username: str | None = None
    password_env: str | None = None  # the name of the environment variable holding the password


class InstanceSpec(_Model):
    name: Annotated[str, Field(pattern=_NAME)]
    product: str | None = None  # none: a host that plays a role for others (a proxy, say)
    home: str = ""
    local: bool = False
    ssh: SshSpec | None = None
    docker: DockerSpec | None = None
    registry: RegistrySpec | None = None
    image: str = ""
    console_url: str = ""
    vars: dict[str, str] = {}
    peers: dict[str, str] = {}  # role -> environment/name, e.g. green: prod/myst-green

    @model_validator(mode="after")
    def _one_way_in(self) -> InstanceSpec:
        if self.local == (self.ssh is not None):
            raise ValueError("give the instance either `ssh:` or `local: true` (exactly one)")
        urls = (self.docker.url if self.docker else "", self.registry.url if self.registry else "")
        if not self.local and any(_on_this_machine(u) for u in (*urls, self.console_url)):
            raise ValueError(
                "sandbox:// and file:// URLs name folders on the bot's own machine: "
                "they need `local: true`"
            )
        return self


class PolicySpec(_Model):
    approvers: list[str] = []
    approver_groups: list[str] = []
    approvals_required: Annotated[int, Field(ge=0, le=20)] = 1
    allow_self_approval: bool = False
    approval_expiry: Duration = 4 * 3600.0
    windows: list[cs.WindowSpec] = []
    freezes: list[cs.FreezeSpec] = []


class FleetSpec(_Model):
    batch_size: Annotated[int, Field(ge=1, le=100)] = 1
    canary: str | None = None


class EnvironmentSpec(_Model):
    policy: PolicySpec = PolicySpec()
    fleet: FleetSpec = FleetSpec()
    instances: list[InstanceSpec] = []


class ConfigSpec(_Model):
    runbooks: Path | None = None
    default_environment: str | None = None
    environments: dict[Annotated[str, Field(pattern=_NAME)], EnvironmentSpec]
    schedule: cs.ScheduleSpec = cs.ScheduleSpec()
    behind_latest: cs.BehindLatestSpec | None = None


@dataclass(frozen=True)
class Config:
    """Everything the config file and the runbooks say, checked against each other."""

    inventory: inv.Inventory
    catalog: Catalog
    source: Path
    schedule: sched.ScheduleSettings = field(default_factory=sched.ScheduleSettings)


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Load the config file and its runbooks, or raise `ConfigError` with every problem."""
    environ = os.environ if environ is None else environ
    doc = load(path)
    try:
        spec = ConfigSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(problems_from(doc, exc, ConfigSpec)) from None
    base = path.resolve().parent
    catalog = load_runbooks(base / spec.runbooks if spec.runbooks else BUNDLED)
    problems: list[ConfigProblem] = []
    environments = {
        name: inv.Environment(
            name=name,
            policy=_policy(env.policy),
            batch_size=env.fleet.batch_size,
            canary=env.fleet.canary,
            instances=tuple(
                _instance(doc, name, index, item, base, catalog, environ, problems)
                for index, item in enumerate(env.instances)
            ),
        )
        for name, env in spec.environments.items()
    }
    inventory = inv.Inventory(
        environments=environments, default_environment=spec.default_environment
    )
    for env_name, environment in environments.items():
        for index, instance in enumerate(environment.instances):
            where: list[str | int] = ["environments", env_name, "instances", index]
            problems.extend(_check_instance(doc, where, instance, inventory, catalog))
    for name, env in spec.environments.items():
        seen = [i.name for i in env.instances]
        for dup in {n for n in seen if seen.count(n) > 1}:
            problems.append(
                doc.problem(
                    ["environments", name, "instances"],
                    f"has two instances named `{dup}`.",
                    "Give each instance its own name.",
                )
            )
    for name, env in spec.environments.items():
        for key, names in (
            ("windows", [w.name for w in env.policy.windows]),
            ("freezes", [f.name for f in env.policy.freezes]),
        ):
            for dup in cs.duplicate_names(names):
                problems.append(
                    doc.problem(
                        ["environments", name, "policy", key],
                        f"has two entries named `{dup}`.",
                        "Give each its own name: `window=` and messages use it.",
                    )
                )
    if spec.default_environment and spec.default_environment not in spec.environments:
        problems.append(
            doc.problem(
                ["default_environment"],
                f"names no environment (`{spec.default_environment}`).",
                f"Use one of: {', '.join(spec.environments)}.",
            )
        )
    if problems:
        raise ConfigError(problems)
    return Config(
        inventory=inventory,
        catalog=catalog,
        source=path,
        schedule=cs.settings(spec.schedule, spec.behind_latest),
    )


def _policy(spec: PolicySpec) -> inv.Policy:
    return inv.Policy(
        approvers=tuple(spec.approvers),
        approver_groups=tuple(spec.approver_groups),
        approvals_required=spec.approvals_required,
        allow_self_approval=spec.allow_self_approval,
        approval_expiry_minutes=max(1, round(spec.approval_expiry / 60)),
        calendar=cs.calendar(spec.windows, spec.freezes),
    )


def _instance(
    doc: YamlDocument,
    env: str,
    index: int,
    spec: InstanceSpec,
    base: Path,
    catalog: Catalog,
    environ: Mapping[str, str],
    problems: list[ConfigProblem],
) -> inv.Instance:
    where: list[str | int] = ["environments", env, "instances", index]
    runbook: Runbook | None = None
    if spec.product is not None:
        try:
            runbook = catalog.find(spec.product)
        except UnknownProduct as exc:
            problems.append(doc.problem([*where, "product"], exc.problem, exc.fix))
    ssh = None
    if spec.ssh:
        key, known_hosts = base / spec.ssh.key, base / spec.ssh.known_hosts
        for field, file in (("key", key), ("known_hosts", known_hosts)):
            if not file.is_file():
                fix = (
                    "Create it from the host's key after checking its fingerprint "
                    "(ssh-keyscan -p PORT HOST)."
                    if field == "known_hosts"
                    else "Point it at the private key the bot logs in with."
                )
                problems.append(
                    doc.problem([*where, "ssh", field], f"`{file}` does not exist.", fix)
                )
        ssh = inv.SshTarget(
            host=spec.ssh.host,
            port=spec.ssh.port,
            user=spec.ssh.user,
            key_file=key,
            known_hosts=known_hosts,
            connect_timeout=spec.ssh.connect_timeout,
            keep_open=spec.ssh.keep_open,
        )
    registry = None
    if spec.registry:
        password = None
        if spec.registry.password_env:
            password = environ.get(spec.registry.password_env)
            if password is None:
                problems.append(
                    doc.problem(
                        [*where, "registry", "password_env"],
                        f"names `{spec.registry.password_env}`, which is not set.",
                        "Export that variable (or remove password_env).",
                    )
                )
        registry = inv.Registry(
            url=spec.registry.url.rstrip("/"), username=spec.registry.username, password=password
        )
    docker = None
    if spec.docker:
        tls = spec.docker.tls
        docker = inv.DockerEndpoint(
            url=spec.docker.url,
            timeout=spec.docker.timeout,
            tls_ca=base / tls.ca if tls else None,
            tls_cert=base / tls.cert if tls else None,
            tls_key=base / tls.key if tls else None,
        )
    return inv.Instance(
        name=spec.name,
        environment=env,
        product=runbook.product if runbook else (spec.product or ""),
        home=spec.home,
        local=spec.local,
        ssh=ssh,
        docker=docker,
        registry=registry,
        image=spec.image,
        console_url=spec.console_url,
        variables=dict(spec.vars),
        peers=dict(spec.peers),
    )


def _check_instance(
    doc: YamlDocument,
    where: list[str | int],
    instance: inv.Instance,
    inventory: inv.Inventory,
    catalog: Catalog,
) -> list[ConfigProblem]:
    """Peers exist, and the instance gives every value its runbook's default strategy needs
    (other strategies are checked when someone asks for them)."""
    problems = []
    peers: dict[str, inv.Instance] = {}
    for role, key in instance.peers.items():
        try:
            peers[role] = inventory.by_key(key)
        except (UnknownInstance, UnknownEnvironment):
            problems.append(
                doc.problem(
                    [*where, "peers", role],
                    f"names `{key}`, which is not an instance in this config.",
                    "Write it as environment/name of a configured instance.",
                )
            )
    try:
        runbook = catalog.find(instance.product)
    except UnknownProduct:
        return problems  # a plain host, or a product already reported as unknown
    strategy = runbook.strategy(None)
    values = {
        "": instance.template_values(),
        **{role: peer.template_values() for role, peer in peers.items()},
    }
    for name in missing_values(
        needed_values(runbook, [*strategy.steps, *strategy.rollback]), values
    ):
        problems.append(
            doc.problem(
                where,
                f"gives no value for `{name}`, which the {runbook.product} runbook's "
                f"{strategy.name} strategy uses.",
                "Add it (or under `vars:`).",
            )
        )
    if runbook.versions.kind == "registry" and not (instance.registry and instance.image):
        problems.append(
            doc.problem(
                where,
                f"the {runbook.product} runbook reads versions from the image registry, but "
                "`registry:` or `image:` is missing.",
                "Add both (e.g. registry.url and image: host/myst-studio).",
            )
        )
    steps = [runbook.detect, *strategy.steps, *strategy.rollback]
    if any(s.action.kind == "docker" for s in steps) and instance.docker is None:
        problems.append(
            doc.problem(
                where,
                f"the {runbook.product} runbook uses the Docker Engine, but `docker:` is missing.",
                "Add docker.url (unix:///var/run/docker.sock or tcp://...).",
            )
        )
    return problems


def _on_this_machine(url: str) -> bool:
    """A sandbox engine, registry or console: folders the bot reads itself (adapters.sandbox)."""
    return urlsplit(url).scheme in {"sandbox", "file"}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
