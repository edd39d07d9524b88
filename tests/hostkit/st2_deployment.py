"""StackStorm test hosts behind the bot's config, reached over real SSH as production would be.

`St2Deployment` writes the config for one StackStorm instance (`prod/st2-prod`, an `St2Host`) and,
for the rollover, the new host that takes over (`prod/st2-new`, named in the instance's `peers:`
as `new`). Every host is a fake root behind the same sshd: the hosts' `{root}`, `{bin}`, ...
values (`St2Host.variables()`) are the instances' `vars:`, as an operator would write the real
ones (an empty root, /usr/bin, ...) if the runbook's defaults did not already say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import Config, load_config
from tests.hostkit.services import Services
from tests.hostkit.sshd import SshServer
from tests.hostkit.stackstorm import St2Host

POLICY = {"approvers": ["U0BOB0001", "U0CAROL01"], "approvals_required": 1}
MAIN, NEW = "st2-prod", "st2-new"

# What the st2 package would bring; gone from a host that is only prepared for StackStorm.
_UNINSTALL = """
set -eu
ST2_ROOT=$1
. "$ST2_ROOT/usr/lib/st2-hostkit/lib.sh"
. "$HOSTKIT/packages.sh"
: >"$STATE/installed"
rm -f "$STATE/mistral-revision"
place_files
"""


@dataclass
class St2Deployment:
    host: St2Host  # prod/st2-prod, the instance upgrades are asked for
    ssh: SshServer
    services: Services
    config_file: Path
    make_host: Callable[..., St2Host]
    new: St2Host | None = None  # prod/st2-new, the rollover's new host
    main_vars: dict[str, str] = field(default_factory=dict)
    new_vars: dict[str, str] = field(default_factory=dict)

    def config(self) -> Config:
        return load_config(self.config_file)

    def add_new_host(self, *, version: str, **options: Any) -> St2Host:
        """The rollover's new host, prepared as StackStorm's guide asks: its package repository
        offers `version` (and the releases before it), the old host's datastore key is copied
        to /etc/st2/keys (unless `crypto_key` says otherwise), no st2 package is installed and
        nothing runs. `options` are `St2Host`'s (package_tool, crypto_key, ...)."""
        options.setdefault("crypto_key", self.host.crypto_key)
        options.setdefault("audit_logs", 0)
        host = self.make_host(version=version, running=False, **options)
        done = host.run("/bin/sh", "-c", _UNINSTALL, "uninstall", str(host.root))
        if done.returncode != 0:
            raise RuntimeError(f"could not empty {host.root}: {done.stdout}{done.stderr}")
        self.new = host
        self.write_config()
        return host

    def write_config(self) -> None:
        ssh = {
            "host": "127.0.0.1",
            "port": self.ssh.port,
            "user": self.services.host_user,
            "key": str(self.ssh.client_key),
            "known_hosts": str(self.ssh.known_hosts),
            "connect_timeout": "5s",
        }
        main: dict[str, Any] = {
            "name": MAIN,
            "product": "st2",
            "ssh": ssh,
            "vars": {**self.host.variables(), **self.main_vars},
        }
        instances = [main]
        if self.new is not None:
            main["peers"] = {"new": f"prod/{NEW}"}
            new_vars = {**self.new.variables(), **self.new_vars}
            instances.append({"name": NEW, "ssh": ssh, "vars": new_vars})
        document = {
            "default_environment": "prod",
            "environments": {"prod": {"policy": POLICY, "instances": instances}},
        }
        self.config_file.write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.fixture
def st2_deployment_factory(
    services: Services,
    st2_host_factory: Callable[..., St2Host],
    ssh_server: SshServer,
    tmp_path: Path,
) -> Callable[..., St2Deployment]:
    """Makes a deployment of one `St2Host` (keyword arguments as `St2Host`'s) behind a fresh
    sshd; `add_new_host` adds the rollover's new host."""
    count = 0

    def make(**options: Any) -> St2Deployment:
        nonlocal count
        count += 1
        deployment = St2Deployment(
            host=st2_host_factory(**options),
            ssh=ssh_server,
            services=services,
            config_file=tmp_path / f"st2-config-{count}.yaml",
            make_host=st2_host_factory,
        )
        deployment.write_config()
        return deployment

    return make
