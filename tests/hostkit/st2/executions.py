"""`st2 run <action> [name=value ...]` of a StackStorm test host: `packs.install`, from git.

From 2.1 on, packs.install takes `packs`, each an Exchange name or a git URL of a repository
holding one pack, and no `repo_url`: the API refuses parameters an action does not have. Before
2.1 it took pack names from one `repo_url` (at its root, or under packs/ with subtree=true) and
a `branch`. Clones are real `git clone`s: file:// repositories work; the network and the
Exchange index do not. The execution needs st2actionrunner, st2scheduler (2.10 on) and
st2workflowengine (3.0 on): without them the real CLI polls for ever; this one prints its dots
for RUN_WAIT seconds (a host setting) and gives up.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hostcli as cli

NEW = {
    "packs": "array",
    "register": "string",
    "env": "object",
    "force": "boolean",
    "skip_dependencies": "boolean",
    "timeout": "integer",
    "checkout_submodules": "boolean",
}
OLD = {
    "packs": "array",
    "repo_url": "string",
    "branch": "string",
    "subtree": "boolean",
    "register": "string",
    "env": "object",
}
NEW_TASKS = [
    ("init_task", "core.noop"),
    ("download_pack", "packs.download"),
    ("make_a_prerun", "packs.virtualenv_prerun"),
    ("get_pack_dependencies", "packs.get_pack_dependencies"),
    ("check_dependency_and_conflict_list", "core.noop"),
    ("install_pack_requirements", "packs.setup_virtualenv"),
    ("get_pack_warnings", "packs.get_pack_warnings"),
    ("register_pack", "packs.load"),
]
OLD_TASKS = [
    ("download pack", "packs.download"),
    ("make a prerun", "packs.virtualenv_prerun"),
    ("install pack dependencies", "packs.setup_virtualenv"),
    ("register pack", "packs.load"),
    ("restart sensor container", "packs.restart_component"),
]


class Failure(Exception):
    """The pack could not be installed; the message is the task's error."""


def convert(kind: str, value: str) -> Any:
    if kind == "array":
        return [part.strip() for part in value.split(",")]
    if kind == "boolean":
        return value.lower() == "true"
    if kind == "integer":
        return int(value)
    return json.loads(value) if kind == "object" else value


def clone(url: str, branch: str | None, into: Path) -> None:
    argv = ["git", "clone", "--quiet", *(["--branch", branch] if branch else []), url, str(into)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Failure(f'Failed to clone repository "{url}": {done.stderr.strip()}')


def pack_ref(directory: Path, fallback: str) -> str:
    meta = directory / "pack.yaml"
    if not meta.is_file():
        raise Failure(f'Pack "{fallback}" not found or it\'s missing a "pack.yaml" file.')
    text = meta.read_text()
    found = re.search(r"^ref:\s*(\S+)", text, re.M) or re.search(r"^name:\s*(\S+)", text, re.M)
    return found.group(1).strip("\"'") if found else fallback


def place(host: cli.Host, source: Path, ref: str, origin: str) -> None:
    target = host.root / "opt" / "stackstorm" / "packs" / ref
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".git"))
    (host.root / "opt" / "stackstorm" / "virtualenvs" / ref).mkdir(parents=True, exist_ok=True)
    host.journal(f"packs.install {ref} from {origin}")


def install(host: cli.Host, params: dict[str, Any], work: Path) -> list[str]:
    installed: list[str] = []
    if host.version >= (2, 1):
        for spec in params["packs"]:
            if "://" not in spec and not spec.startswith(("git@", "/")):
                raise Failure(f'No record of the "{spec}" pack in the index.')
            checkout = work / f"pack-{len(installed)}"
            clone(spec, None, checkout)
            installed.append(pack_ref(checkout, Path(spec).stem))
            place(host, checkout, installed[-1], spec)
        return installed
    url = params.get("repo_url", "StackStorm/st2contrib")
    if "://" not in url and not url.startswith(("git@", "/")):
        url = f"https://github.com/{url}"
    clone(url, params.get("branch", "master"), work / "repo")
    for name in params["packs"]:
        source = work / "repo" / ("packs" if params.get("subtree") else "") / name
        pack_ref(source, name)
        place(host, source, name, url)
        installed.append(name)
    return installed


def scalar(value: Any) -> str:
    """One value as YAML prints it: plain unless it could be read as something else."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return json.dumps(value)
    text = str(value)
    special = (
        not text
        or text[0] in "!&*?|>'\"%@`[]{},#-: "
        or text != text.strip()
        or ": " in text
        or " #" in text
        or text.lower() in ("null", "true", "false", "yes", "no", "~")
        or re.fullmatch(r"[-+]?\d+(\.\d*)?", text)
    )
    return "'" + text.replace("'", "''") + "'" if special else text


def emit(value: Any, indent: int) -> list[str]:
    """Nested values as the CLI prints them (YAML block style, lists under their key)."""
    pad, out = " " * indent, []
    if isinstance(value, dict):
        for key in sorted(value):
            item = value[key]
            if isinstance(item, dict | list) and item:
                out.append(f"{pad}{key}:")
                out.extend(emit(item, indent + 2 if isinstance(item, dict) else indent))
            else:
                out.append(f"{pad}{key}: {scalar(item)}")
        return out
    for item in value:
        if isinstance(item, dict) and item:
            inner = emit(item, indent + 2)
            out.extend([f"{pad}- {inner[0].lstrip()}", *inner[1:]])
        else:
            out.append(f"{pad}- {scalar(item)}")
    return out


def stamp(host: cli.Host, moment: datetime) -> str:
    if host.version < (2, 1):
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%a, %d %b %Y %H:%M:%S UTC")


def show(
    host: cli.Host, params: dict[str, Any], packs: list[str], failure: str | None, started: datetime
) -> None:
    ended = datetime.now(UTC)
    status = "failed" if failure else "succeeded"
    elapsed = (
        f" ({int((ended - started).total_seconds())}s elapsed)" if host.version >= (2, 1) else ""
    )
    tasks = NEW_TASKS if host.version >= (2, 1) else OLD_TASKS
    if failure:
        tasks = tasks[: 2 if host.version >= (2, 1) else 1]
        result: dict[str, Any] = {
            "errors": [{"message": failure, "task_id": tasks[-1][0], "type": "error"}],
            "output": None,
        }
    else:
        result = {
            "output": {
                "conflict_list": None,
                "message": "Successfully installed packs",
                "packs_list": packs,
                "warning_list": [],
            }
        }
    print(f"id: {secrets.token_hex(12)}\naction.ref: packs.install\nparameters: ")
    print("\n".join(emit(params, 2)))
    print(f"status: {status}{elapsed}")
    print(f"start_timestamp: {stamp(host, started)}\nend_timestamp: {stamp(host, ended)}")
    print("result: ")
    print("\n".join(emit(result, 2)))
    rows = [
        [
            secrets.token_hex(12),
            "succeeded" if i < len(tasks) - 1 or not failure else "failed",
            task,
            action,
            stamp(host, started),
        ]
        for i, (task, action) in enumerate(tasks)
    ]
    print(cli.table(["id", "status", "task", "action", "start_timestamp"], rows))


def main(root: Path, argv: list[str]) -> int:
    host = cli.Host(root)
    words = [arg for arg in argv if not arg.startswith("-")]
    if not words:
        print("usage: st2 run [-h] [-a] ref-or-id [parameters ...]", file=sys.stderr)
        return 2
    if words[0] != "packs.install":
        return cli.error(f'Action "{words[0]}" cannot be found.')
    schema = NEW if host.version >= (2, 1) else OLD
    given = dict(word.split("=", 1) for word in words[1:] if "=" in word)
    unknown = [name for name in given if name not in schema]
    if unknown or "packs" not in given:
        names = ", ".join(repr(name) for name in unknown)
        message = (
            f"Additional properties are not allowed ({names} "
            f"{'was' if len(unknown) == 1 else 'were'} unexpected)"
            if unknown
            else "'packs' is a required property"
        )
        return cli.http_error("400 Client Error: Bad Request", message, "/v1/executions")
    params = {name: convert(schema[name], value) for name, value in given.items()}
    needed = ["st2actionrunner"] + (["st2scheduler"] if host.version >= (2, 10) else [])
    needed += ["st2workflowengine"] if host.version >= (3, 0) else []
    missing = [name for name in needed if not host.running(name)]
    if missing:
        for _ in range(int(float(host.settings.get("RUN_WAIT", "2")) * 2)):
            print(".", end="", flush=True)
            time.sleep(0.5)
        print(
            f"\nst2 (test host): the execution is still waiting: {' '.join(missing)} not "
            "running; the real CLI would keep waiting.",
            file=sys.stderr,
        )
        return 1
    started, failure, packs = datetime.now(UTC), None, []
    with tempfile.TemporaryDirectory(prefix="st2-packs-") as work:
        try:
            packs = install(host, params, Path(work))
        except Failure as exc:
            failure = str(exc)
    print(".")
    show(host, params, packs, failure, started)
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
