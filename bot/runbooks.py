"""Load runbook YAML files into `Runbook` records, refusing anything unsafe or inconsistent.

The schema is checked by pydantic; then the rules pydantic cannot see: placeholders that name
nothing, captures used before they are taken, destructive steps with no backup before them.
Every problem names the file, the line and the key, and says how to fix it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.domain import runbook as rb
from bot.domain.errors import ConfigError, ConfigProblem
from bot.domain.runbook import PLAN_VARIABLES, DockerOperation
from bot.domain.templates import TemplateSyntaxError, placeholders
from bot.durations import Duration
from bot.yamlfile import YamlDocument, load, problems_from

BUNDLED = Path(__file__).resolve().parent.parent / "runbooks"
_ID = r"^[a-z0-9][a-z0-9-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FollowSpec(_Model):
    until: str | None = None
    max_lines: Annotated[int, Field(gt=0, le=100_000)] = 500
    max_time: Duration = 120.0


class HttpSpec(_Model):
    url: str
    expect_status: int = 200


class NoLinesMatchingSpec(_Model):
    no_lines_matching: str
    description: str = ""


class CaptureEqualsArgs(_Model):
    capture: str
    expected: str


class CaptureEqualsSpec(_Model):
    capture_equals: CaptureEqualsArgs
    description: str = ""


class StepSpec(_Model):
    id: Annotated[str, Field(pattern=_ID)]
    title: str
    shell: str | None = None
    docker: dict[DockerOperation, dict[str, str]] | None = None
    http: HttpSpec | None = None
    follow: FollowSpec | None = None
    timeout: Duration = 300.0
    capture: dict[str, str] = {}
    verify: list[NoLinesMatchingSpec | CaptureEqualsSpec] = []
    destructive: bool = False
    role: Literal["startup_log"] | None = None

    @field_validator("docker")
    @classmethod
    def _one_operation(
        cls, value: dict[DockerOperation, dict[str, str]] | None
    ) -> dict[DockerOperation, dict[str, str]] | None:
        if value is None:
            return value
        if len(value) != 1:
            raise ValueError("name exactly one operation: inspect, images, pull or tag")
        ((operation, arguments),) = value.items()
        wanted = set(rb.DOCKER_ARGUMENTS[operation])
        if set(arguments) != wanted:
            raise ValueError(f"`{operation}` takes exactly: {', '.join(sorted(wanted))}")
        return value


class StrategySpec(_Model):
    description: str
    expected_outage: str = "unknown"
    auto_rollback: bool = False
    steps: Annotated[list[StepSpec], Field(min_length=1)]
    rollback: list[StepSpec] = []


class VersionsSpec(_Model):
    source: Literal["registry", "list"]
    list: tuple[str, ...] = ()


class BackupSpec(_Model):
    capture: str = "backup_path"
    location: str = ""  # where backups go, for the plan (e.g. "{home}/backup/")


class RunbookSpec(_Model):
    product: Annotated[str, Field(pattern=_ID)]
    title: str
    aliases: list[Annotated[str, Field(pattern=_ID)]] = []
    versions: VersionsSpec
    defaults: dict[str, str] = {}
    backup: BackupSpec = BackupSpec()
    detect: StepSpec
    default_strategy: str
    strategies: Annotated[dict[str, StrategySpec], Field(min_length=1)]


def load_runbook(path: Path) -> rb.Runbook:
    """Load and check one runbook file, or raise `ConfigError` listing every problem found."""
    doc = load(path)
    try:
        spec = RunbookSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(problems_from(doc, exc, RunbookSpec)) from None
    problems = _check(spec, doc)
    if problems:
        raise ConfigError(problems)
    return _build(spec, path)


def load_runbooks(folder: Path) -> rb.Catalog:
    """Every `*.yaml` in `folder`; problems of all files are reported together."""
    runbooks: list[rb.Runbook] = []
    problems: list[ConfigProblem] = []
    files = sorted(folder.glob("*.yaml"))
    if not files:
        problem = ConfigProblem(
            str(folder),
            "",
            None,
            "holds no runbook (*.yaml).",
            "Point `runbooks:` at the folder with the runbook files.",
        )
        raise ConfigError([problem])
    for path in files:
        try:
            runbooks.append(load_runbook(path))
        except ConfigError as exc:
            problems.extend(exc.problems)
    seen: dict[str, str] = {}
    for runbook in runbooks:
        for name in runbook.names():
            if name in seen:
                problems.append(
                    ConfigProblem(
                        runbook.source,
                        "product",
                        None,
                        f"`{name}` is also a name in {seen[name]}.",
                        "Give each product and alias once.",
                    )
                )
            seen[name] = runbook.source
    if problems:
        raise ConfigError(problems)
    return rb.Catalog(runbooks=tuple(runbooks))


def _check(spec: RunbookSpec, doc: YamlDocument) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    if spec.default_strategy not in spec.strategies:
        problems.append(
            doc.problem(
                ["default_strategy"],
                f"names no strategy (`{spec.default_strategy}`).",
                f"Use one of: {', '.join(spec.strategies)}.",
            )
        )
    known = set(PLAN_VARIABLES) | set(spec.defaults)
    try:
        placeholders(spec.backup.location)
    except TemplateSyntaxError as exc:
        problems.append(doc.problem(["backup", "location"], f"is a malformed template: {exc}.", ""))
    _check_steps([spec.detect], ["detect"], set(known), None, doc, problems)
    if "current_version" not in spec.detect.capture:
        problems.append(
            doc.problem(
                ["detect", "capture"],
                "does not capture `current_version`.",
                "Add a `current_version` capture so the bot can tell what runs now.",
            )
        )
    for name, strategy in spec.strategies.items():
        where = ["strategies", name]
        captured = _check_steps(
            strategy.steps, [*where, "steps"], set(known), spec.backup.capture, doc, problems
        )
        _check_steps(strategy.rollback, [*where, "rollback"], captured, None, doc, problems)
        ids = [s.id for s in (*strategy.steps, *strategy.rollback)]
        for index, step_id in enumerate(ids):
            if step_id in ids[:index]:
                problems.append(
                    doc.problem(
                        where,
                        f"has two steps with the id `{step_id}`.",
                        "Give every step of a strategy its own id.",
                    )
                )
    return problems


def _check_steps(
    steps: list[StepSpec],
    where: list[str | int],
    known: set[str],
    backup: str | None,
    doc: YamlDocument,
    problems: list[ConfigProblem],
) -> set[str]:
    """Check steps in order, adding to `problems`; return the names known after them."""
    captures = {name for step in steps for name in step.capture}
    for index, step in enumerate(steps):
        here: list[str | int] = [*where, index]
        actions = [a for a in (step.shell, step.docker, step.http) if a is not None]
        if len(actions) != 1:
            problems.append(
                doc.problem(
                    here,
                    "must have exactly one of `shell`, `docker` or `http`.",
                    "Keep the one action this step performs.",
                )
            )
        if step.follow and step.shell is None:
            problems.append(
                doc.problem(
                    [*here, "follow"],
                    "only applies to `shell` steps.",
                    "Remove `follow`, or make the step a `shell` step.",
                )
            )
        for name, pattern in step.capture.items():
            problems.extend(_check_pattern(doc, [*here, "capture", name], pattern, group=name))
        for vindex, check in enumerate(step.verify):
            if isinstance(check, NoLinesMatchingSpec):
                problems.extend(
                    _check_pattern(doc, [*here, "verify", vindex], check.no_lines_matching)
                )
        if step.follow and step.follow.until:
            problems.extend(_check_pattern(doc, [*here, "follow", "until"], step.follow.until))
        for text in _templates(step):
            try:
                names = placeholders(text)
            except TemplateSyntaxError as exc:
                problems.append(doc.problem(here, f"has a malformed template `{text}`: {exc}.", ""))
                continue
            problems.extend(_check_names(doc, here, names, known, captures))
        known |= set(step.capture)
        for vindex, check in enumerate(step.verify):
            if isinstance(check, CaptureEqualsSpec) and check.capture_equals.capture not in known:
                problems.append(
                    doc.problem(
                        [*here, "verify", vindex, "capture_equals", "capture"],
                        f"`{check.capture_equals.capture}` is not captured by this step or an "
                        "earlier one.",
                        "Capture it before comparing it.",
                    )
                )
        if backup and step.destructive and backup not in known:
            problems.append(
                doc.problem(
                    [*here, "destructive"],
                    f"step `{step.id}` is destructive but no step before it captures the backup "
                    f"(`{backup}`).",
                    "Take and capture the backup in an earlier step.",
                )
            )
    return known


def _check_names(
    doc: YamlDocument, here: list[str | int], names: list[str], known: set[str], captures: set[str]
) -> Iterable[ConfigProblem]:
    # A name that is neither known nor captured anywhere is an instance variable: it is checked
    # against each instance when the config is loaded.
    for name in names:
        if name in captures and name not in known:
            yield doc.problem(
                here,
                f"uses `{{{name}}}` before a step captures it.",
                "Capture it in an earlier step, or use it later.",
            )


def _check_pattern(
    doc: YamlDocument, where: list[str | int], pattern: str, group: str | None = None
) -> Iterable[ConfigProblem]:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        yield doc.problem(
            where,
            f"is not a valid regular expression: {exc}.",
            "Fix the pattern (in YAML, single quotes keep backslashes).",
        )
        return
    if group and group not in compiled.groupindex:
        yield doc.problem(
            where, f"has no group named `{group}`.", f"Mark the value with (?P<{group}>...)."
        )


def _templates(step: StepSpec) -> list[str]:
    texts = [step.shell] if step.shell else []
    if step.docker:
        texts += [v for args in step.docker.values() for v in args.values()]
    if step.http:
        texts.append(step.http.url)
    texts += [c.capture_equals.expected for c in step.verify if isinstance(c, CaptureEqualsSpec)]
    return texts


def _build(spec: RunbookSpec, path: Path) -> rb.Runbook:
    return rb.Runbook(
        product=spec.product,
        title=spec.title,
        aliases=tuple(spec.aliases),
        source=str(path),
        digest=hashlib.sha256(path.read_bytes()).hexdigest(),
        detect=_step(spec.detect),
        versions=rb.VersionSource(kind=spec.versions.source, versions=spec.versions.list),
        defaults=dict(spec.defaults),
        backup_capture=spec.backup.capture,
        backup_location=spec.backup.location,
        strategies={
            name: rb.Strategy(
                name=name,
                description=s.description,
                expected_outage=s.expected_outage,
                steps=tuple(_step(x) for x in s.steps),
                rollback=tuple(_step(x) for x in s.rollback),
                auto_rollback=s.auto_rollback,
            )
            for name, s in spec.strategies.items()
        },
        default_strategy=spec.default_strategy,
    )


def _step(spec: StepSpec) -> rb.Step:
    action: rb.Action
    if spec.shell is not None:
        follow = spec.follow and rb.Follow(
            until=spec.follow.until,
            max_lines=spec.follow.max_lines,
            max_seconds=spec.follow.max_time,
        )
        action = rb.ShellAction(command=spec.shell, follow=follow or None)
    elif spec.docker is not None:
        ((operation, arguments),) = spec.docker.items()
        action = rb.DockerAction(operation=operation, arguments=dict(arguments))
    else:
        assert spec.http is not None
        action = rb.HttpAction(url=spec.http.url, expect_status=spec.http.expect_status)
    verifications: list[rb.Verification] = []
    for check in spec.verify:
        if isinstance(check, NoLinesMatchingSpec):
            verifications.append(
                rb.NoLinesMatching(
                    pattern=check.no_lines_matching,
                    description=check.description or f"no line matches `{check.no_lines_matching}`",
                )
            )
        else:
            args = check.capture_equals
            verifications.append(
                rb.CaptureEquals(
                    capture=args.capture,
                    expected=args.expected,
                    description=check.description or f"{args.capture} is {args.expected}",
                )
            )
    return rb.Step(
        id=spec.id,
        title=spec.title,
        action=action,
        timeout=spec.timeout,
        captures=tuple(rb.Capture(name=k, pattern=v) for k, v in spec.capture.items()),
        verifications=tuple(verifications),
        destructive=spec.destructive,
        role=rb.StepRole(spec.role) if spec.role else None,
    )
