"""A sandbox MyST Studio install in a folder: what `python -m bot demo` upgrades.

No Docker and no network: the vendor registry and the Docker Engine are folders, the vendor's
host scripts (the Docker-less ones in `deploy/sandbox/myst/`) drive them, and the bot reaches them
through the `sandbox://` and `file://` URLs of the config that `adapters.sandbox` serves. The
layout is described in `deploy/sandbox/README.md`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from adapters.docker_engine import split_reference
from adapters.sandbox import ENGINE_SCHEME
from bot.domain.errors import OperationalError, UserError

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "sandbox"
REGISTRY_HOST = "registry.sandbox"  # the name the engine reaches the registry folder by
REPOSITORY = "myst-studio"
IMAGE = f"{REGISTRY_HOST}/{REPOSITORY}"
VERSIONS = ("3.9.0.3", "3.9.1", "3.10.0")
SEED_ROWS = ("project=payments-platform", "pipeline=deploy-payments", "environment=prod")
CONTAINER = "myst-studio"
_INSTALL_TIMEOUT = 30.0


def create_sandbox(
    folder: Path, *, version: str = "3.9.0.3", versions: Sequence[str] = VERSIONS
) -> Path:
    """Lay out a fresh sandbox in `folder` (empty or new) and return its config file.

    The registry holds `versions`; MyST Studio is installed from it at `version` and running, on a
    seeded database, as the vendor's guide installs it (pull.sh, then start.sh). Raises
    `UserError` for a folder that is not empty and `OperationalError` when the install fails.
    """
    if version not in versions:
        raise ValueError(f"version {version} is not among the sandbox's versions {versions}")
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise UserError(
            f"{folder} is not empty: a sandbox is laid out in a folder of its own.",
            "Choose a new or empty folder.",
        )
    registry, engine, home = folder / "registry", folder / "engine", folder / "myst-studio"
    for each in versions:
        publish(registry, f"{REPOSITORY}:{each}", each)
    for sub in ("images", "containers", "registries"):
        (engine / sub).mkdir(parents=True)
    (engine / "tags").touch()
    # The engine's route to the registry, by the host name images carry (relative: the folder
    # may move).
    (engine / "registries" / REGISTRY_HOST).symlink_to(Path("..", "..", "registry"))
    _install(home, engine, version)
    return _write_config(folder)


def publish(registry: Path, image: str, version: str) -> str:
    """Put an image of MyST Studio `version` into a sandbox registry folder as `path:tag`; returns
    its id, the digest of its content as Docker's is."""
    repository, tag = split_reference(image)
    target = registry / repository / tag
    target.mkdir(parents=True, exist_ok=True)
    content = f"{version}\n"
    image_id = "sha256:" + hashlib.sha256(content.encode()).hexdigest()
    (target / "version").write_text(content)
    (target / "created").write_text(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ\n"))
    (target / "id").write_text(image_id + "\n")  # last: a folder with an id is a whole image
    return image_id


def _install(home: Path, engine: Path, version: str) -> None:
    """The vendor's scripts in `home`, a seeded database, then pull and start `version`."""
    shutil.copytree(DEPLOY / "myst", home)  # bin/ and lib/, modes kept
    for sub in ("etc", "data", "backup", "faults"):
        (home / sub).mkdir(exist_ok=True)
    (home / "etc" / "myst.env").write_text(
        f"SANDBOX_ENGINE={engine}\nMYST_REGISTRY_IMAGE={IMAGE}\nMYST_CONTAINER={CONTAINER}\n"
    )
    rows = "".join(f"{row}\n" for row in SEED_ROWS)
    (home / "data" / "myst-studio.db").write_text(f"schema_version={version}\n{rows}")
    for argv in ([str(home / "bin" / "pull.sh"), version], [str(home / "bin" / "start.sh")]):
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT, check=False
        )
        if done.returncode != 0:
            raise OperationalError(
                f"Installing the sandbox failed at `{' '.join(argv)}`:\n{done.stdout}{done.stderr}",
                host="localhost",
            )
    container = engine / "containers" / CONTAINER
    if (container / "status").read_text().strip() != "running":
        log = (container / "log").read_text()
        raise OperationalError(f"The sandbox's MyST Studio did not start:\n{log}", host="localhost")


def _write_config(folder: Path) -> Path:
    """`deploy/sandbox/config.yaml` with its paths, relative to the sandbox, made absolute."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "config.yaml").read_text())
    for environment in config["environments"].values():
        for instance in environment.get("instances", []):
            if instance.get("home"):
                instance["home"] = str(folder / instance["home"])
            for section in ("docker", "registry"):
                if isinstance(instance.get(section), dict) and "url" in instance[section]:
                    instance[section]["url"] = _absolute(instance[section]["url"], folder)
            if instance.get("console_url"):
                instance["console_url"] = _absolute(instance["console_url"], folder)
    path = folder / "config.yaml"
    header = (
        "# Written by bot.sandbox.create_sandbox from deploy/sandbox/config.yaml, with the paths\n"
        f"# made absolute for the sandbox in {folder}.\n"
    )
    path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return path


def _absolute(url: str, folder: Path) -> str:
    """`sandbox:engine` or `file:registry` (relative to `folder`) -> `scheme:///abs/path`."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in (ENGINE_SCHEME, "file") or rest.startswith("/"):
        return url
    return scheme + (folder / rest).as_uri().removeprefix("file")
