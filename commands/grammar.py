"""The `/upgrade` grammar: the text after the slash command becomes one command record.

    /upgrade <product> <version> [env=E] [strategy=S] [instance=I] [at=TIME] [window=W]
             [--dry-run] [--allow-downgrade]
    /upgrade help | status [run] | history [product] [env] | cancel <run> | rollback <run>
    /upgrade resume <run>
    /upgrade schedule list | schedule cancel <run>
    /upgrade lock <env> <reason> | unlock <env>

`at=` takes one word (`2026-12-05T02:00+01:00`) or a day and a time (`at=sat 02:00`): a time
following `at=<day>` belongs to it. A mistake gets one sentence saying what is wrong, and the
right form.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import NoReturn

from bot.domain.errors import UserError

UPGRADE_FORM = (
    "/upgrade <product> <version> [env=E] [strategy=S] [instance=I] [at=TIME] [window=W] "
    "[--dry-run] [--allow-downgrade]"
)
FORMS = {
    "help": "/upgrade help",
    "status": "/upgrade status [run]",
    "history": "/upgrade history [product] [env]",
    "cancel": "/upgrade cancel <run>",
    "rollback": "/upgrade rollback <run>",
    "resume": "/upgrade resume <run>",
    "schedule": "/upgrade schedule list | schedule cancel <run>",
    "lock": "/upgrade lock <env> <reason>",
    "unlock": "/upgrade unlock <env>",
}
_OPTIONS = ("env", "strategy", "instance", "at", "window")
_FLAGS = ("--dry-run", "--allow-downgrade")
_CLOCK = re.compile(r"\d{1,2}:\d{2}")


class UsageError(UserError):
    """The command does not follow the grammar; the fix shows the right form."""


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True, kw_only=True)
class Upgrade:
    product: str
    version: str
    environment: str | None = None
    strategy: str | None = None
    instance: str | None = None
    dry_run: bool = False
    allow_downgrade: bool = False
    at: str | None = None  # as typed: read in the requester's time zone by the engine
    window: str | None = None

    @property
    def scheduled(self) -> bool:
        return self.at is not None or self.window is not None


@dataclass(frozen=True)
class Status:
    run_id: int | None = None


@dataclass(frozen=True)
class History:
    product: str | None = None
    environment: str | None = None


@dataclass(frozen=True)
class Cancel:
    run_id: int


@dataclass(frozen=True)
class Rollback:
    run_id: int


@dataclass(frozen=True)
class Resume:
    """Go on with an interrupted run from the step left in doubt."""

    run_id: int


@dataclass(frozen=True)
class ScheduleList:
    pass


@dataclass(frozen=True)
class ScheduleCancel:
    run_id: int


@dataclass(frozen=True)
class Lock:
    environment: str
    reason: str


@dataclass(frozen=True)
class Unlock:
    environment: str


Command = (
    Help
    | Upgrade
    | Status
    | History
    | Cancel
    | Rollback
    | Resume
    | ScheduleList
    | ScheduleCancel
    | Lock
    | Unlock
)


def parse(text: str) -> Command:
    """Parse the slash command's text (as Slack sends it, with &, < and > escaped)."""
    words = html.unescape(text).split()
    if not words or words[0].lower() == "help":
        return Help()
    verb, rest = words[0].lower(), words[1:]
    if verb == "status":
        _at_most(verb, rest, 1)
        return Status(_run_id(verb, rest[0]) if rest else None)
    if verb == "history":
        _at_most(verb, rest, 2)
        return History(*rest)
    if verb == "cancel":
        _exactly(verb, rest, 1, "a run number")
        return Cancel(_run_id(verb, rest[0]))
    if verb == "rollback":
        _exactly(verb, rest, 1, "a run number")
        return Rollback(_run_id(verb, rest[0]))
    if verb == "resume":
        _exactly(verb, rest, 1, "a run number")
        return Resume(_run_id(verb, rest[0]))
    if verb == "schedule":
        return _schedule(rest)
    if verb == "lock":
        if len(rest) < 2:
            _usage(verb, "needs an environment and a reason")
        return Lock(rest[0], " ".join(rest[1:]))
    if verb == "unlock":
        _exactly(verb, rest, 1, "an environment")
        return Unlock(rest[0])
    return _upgrade(words)


def _schedule(rest: list[str]) -> ScheduleList | ScheduleCancel:
    action = rest[0].lower() if rest else ""
    if action == "list" and len(rest) == 1:
        return ScheduleList()
    if action != "cancel" or len(rest) != 2:
        _usage("schedule", "needs `list`, or `cancel` and a run number")
    return ScheduleCancel(_run_id("schedule", rest[1]))


def _joined(words: list[str]) -> list[str]:
    """`at=sat` followed by `02:00` becomes the one word `at=sat 02:00`."""
    joined: list[str] = []
    for word in words:
        previous = joined[-1] if joined else ""
        if _CLOCK.match(word) and previous.startswith("at=") and ":" not in previous:
            joined[-1] = f"{previous} {word}"
        else:
            joined.append(word)
    return joined


def _upgrade(words: list[str]) -> Upgrade:
    words = _joined(words)
    positional = [w for w in words if "=" not in w and not w.startswith("--")]
    options: dict[str, str] = {}
    for word in words:
        if "=" in word:
            key, _, value = word.partition("=")
            if key not in _OPTIONS:
                raise UsageError(
                    f"`{key}=` is not an option.",
                    f"Options are {', '.join(o + '=' for o in _OPTIONS)}. Use: `{UPGRADE_FORM}`",
                )
            if not value:
                raise UsageError(f"`{key}=` has no value.", f"Use: `{UPGRADE_FORM}`")
            options[key] = value
        elif word.startswith("--") and word not in _FLAGS:
            raise UsageError(f"`{word}` is not a flag.", f"Flags are {', '.join(_FLAGS)}.")
    if len(positional) != 2:
        got = "nothing" if not positional else f"`{' '.join(positional)}`"
        raise UsageError(
            f"An upgrade needs a product and a version, and got {got}.",
            f"Use: `{UPGRADE_FORM}`, e.g. `/upgrade myst 3.9.1 env=prod`, or `/upgrade help`.",
        )
    product, version = positional
    return Upgrade(
        product=product,
        version=version,
        environment=options.get("env"),
        strategy=options.get("strategy"),
        instance=options.get("instance"),
        dry_run="--dry-run" in words,
        allow_downgrade="--allow-downgrade" in words,
        at=options.get("at"),
        window=options.get("window"),
    )


def _run_id(verb: str, word: str) -> int:
    digits = word.removeprefix("#")
    if not digits.isdigit():
        raise UsageError(f"`{word}` is not a run number.", f"Use: `{FORMS[verb]}`, e.g. 42.")
    return int(digits)


def _at_most(verb: str, rest: list[str], count: int) -> None:
    if len(rest) > count:
        _usage(verb, f"takes at most {count} argument{'s' if count > 1 else ''}")


def _exactly(verb: str, rest: list[str], count: int, what: str) -> None:
    if len(rest) != count:
        _usage(verb, f"needs {what}")


def _usage(verb: str, problem: str) -> NoReturn:
    raise UsageError(f"`/upgrade {verb}` {problem}.", f"Use: `{FORMS[verb]}`")
