"""The instances the bot may upgrade, how to reach them, and who may approve what."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.domain.errors import UnknownEnvironment, UnknownInstance
from bot.domain.schedule import Calendar


@dataclass(frozen=True, kw_only=True)
class SshTarget:
    """How to reach a host over SSH. Host keys are always checked against `known_hosts`."""

    host: str
    port: int = 22
    user: str
    key_file: Path
    known_hosts: Path
    connect_timeout: float = 10.0
    keep_open: float = 60.0  # seconds an idle connection waits for the next run; 0: none does

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class DockerEndpoint:
    """A Docker Engine API endpoint: `unix://...` or `tcp://...` (TLS unless on loopback)."""

    url: str
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    timeout: float = 60.0


@dataclass(frozen=True, kw_only=True)
class Registry:
    """An image registry the instance pulls from (the vendor's or a mirror)."""

    url: str  # e.g. https://registry.example.com or http://127.0.0.1:5000
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class Instance:
    """One installation of a product in one environment."""

    name: str
    environment: str
    product: str  # "" for a plain host that only plays a role for others (a proxy, say)
    home: str = ""
    local: bool = False  # run shell steps on the bot's own machine instead of over SSH
    ssh: SshTarget | None = None
    docker: DockerEndpoint | None = None
    registry: Registry | None = None
    image: str = ""  # image repository without tag, e.g. 127.0.0.1:5000/myst-studio
    console_url: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    peers: Mapping[str, str] = field(default_factory=dict)  # role -> environment/name

    @property
    def key(self) -> str:
        return f"{self.environment}/{self.name}"

    @property
    def repository(self) -> str:
        """The image's path inside its registry (`myst-studio` of `host:5000/myst-studio`)."""
        first, _, rest = self.image.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            return rest
        return self.image

    @property
    def address(self) -> str:
        if self.local:
            return "localhost"
        return str(self.ssh) if self.ssh else self.name

    def template_values(self) -> dict[str, str]:
        """The values a runbook template may use about this instance."""
        return {
            "instance": self.name,
            "environment": self.environment,
            "home": self.home,
            "image": self.image,
            "console_url": self.console_url,
            **self.variables,
        }


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Who may approve upgrades in an environment, how, and when runs may start there."""

    approvers: tuple[str, ...] = ()  # Slack user ids
    approver_groups: tuple[str, ...] = ()  # Slack user group ids or handles
    approvals_required: int = 1
    allow_self_approval: bool = False
    approval_expiry_minutes: int = 240
    calendar: Calendar = field(default_factory=Calendar)  # maintenance windows, change freezes


@dataclass(frozen=True, kw_only=True)
class Environment:
    name: str
    instances: tuple[Instance, ...]
    policy: Policy = field(default_factory=Policy)
    batch_size: int = 1  # a fleet: how many instances are upgraded at a time after the canary
    canary: str | None = None  # the instance upgraded first (else the first in the config)


@dataclass(frozen=True, kw_only=True)
class Inventory:
    """All environments, in config order."""

    environments: Mapping[str, Environment]
    default_environment: str | None = None

    def environment(self, name: str) -> Environment:
        if name not in self.environments:
            known = ", ".join(self.environments) or "none configured"
            raise UnknownEnvironment(f"There is no environment `{name}`.", f"Use one of: {known}.")
        return self.environments[name]

    def instances(self) -> list[Instance]:
        return [i for env in self.environments.values() for i in env.instances]

    def by_key(self, key: str) -> Instance:
        """The instance `environment/name`; raises `UnknownInstance`."""
        environment, _, name = key.partition("/")
        for instance in self.environment(environment).instances:
            if instance.name == name:
                return instance
        raise UnknownInstance(
            f"There is no instance `{key}` in the config.", "Write peers as environment/name."
        )

    def find(self, product: str, environment: str | None, instance: str | None) -> Instance:
        """The one instance of `product` the request means, or a UserError saying how to choose."""
        env, found = self.targets(product, environment, instance)
        if len(found) > 1:
            names = ", ".join(i.name for i in found)
            raise UnknownInstance(
                f"Environment `{env.name}` has several {product} instances ({names}).",
                "Say which with instance=<name>.",
            )
        return found[0]

    def targets(
        self, product: str, environment: str | None, instance: str | None
    ) -> tuple[Environment, list[Instance]]:
        """The instances of `product` a request means: one, or a fleet with its canary first."""
        envs = [self.environment(environment)] if environment else self._envs_with(product)
        if not envs:
            raise UnknownInstance(
                f"No environment in the config has a {product} instance.",
                "Add one under `environments:` in the config.",
            )
        if len(envs) > 1:
            names = ", ".join(e.name for e in envs)
            raise UnknownInstance(
                f"{product} runs in several environments ({names}).",
                f"Say which with env=<name>, one of: {names}.",
            )
        env = envs[0]
        candidates = [i for i in env.instances if i.product == product]
        if instance:
            candidates = [i for i in candidates if i.name == instance]
        elif len(candidates) > 1:
            # an instance another one names as its peer (a green twin, say) is not asked for
            # by default: it is upgraded through the instance that names it
            peers = {key for i in candidates for key in i.peers.values()}
            candidates = [i for i in candidates if i.key not in peers] or candidates
        if not candidates:
            raise UnknownInstance(
                f"Environment `{env.name}` has no {product} instance"
                + (f" named `{instance}`." if instance else "."),
                "Check the name against the config.",
            )
        candidates.sort(key=lambda i: i.name != env.canary)  # stable: config order otherwise
        return env, candidates

    def _envs_with(self, product: str) -> list[Environment]:
        if self.default_environment:
            default = self.environments.get(self.default_environment)
            if default and any(i.product == product for i in default.instances):
                return [default]
        return [
            e for e in self.environments.values() if any(i.product == product for i in e.instances)
        ]
