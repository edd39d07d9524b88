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

from pydantic import ValidationError

from bot.domain import runbook as rb
from bot.domain.errors import ConfigError, ConfigProblem, InvalidVersion
from bot.domain.runbook import PLAN_VARIABLES, backup_name
from bot.domain.templates import TemplateSyntaxError, placeholders
from bot.domain.versions import parse_version
from bot.runbook_schema import (
    CaptureEqualsSpec,
    ConditionSpec,
    NoLinesMatchingSpec,
    RunbookSpec,
    StepSpec,
    StrategySpec,
)
from bot.yamlfile import YamlDocument, load, problems_from

BUNDLED = Path(__file__).resolve().parent.parent / "runbooks"
SELF = "self"  # how a runbook names the instance itself as a role


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
    for version, commands in spec.migrations.items():
        try:
            parse_version(version)
        except InvalidVersion as exc:
            problems.append(doc.problem(["migrations", version], exc.problem, exc.fix))
        for index, command in enumerate(commands):
            try:
                placeholders(command)
            except TemplateSyntaxError as exc:
                problems.append(
                    doc.problem(
                        ["migrations", version, index], f"is a malformed template: {exc}.", ""
                    )
                )
    uses_migrations = any(
        step.for_each for s in spec.strategies.values() for step in (*s.steps, *s.rollback)
    )
    if uses_migrations and not spec.migrations:
        problems.append(
            doc.problem(
                ["migrations"],
                "is empty, but a step runs `for_each: migration`.",
                "List each version's migration commands.",
            )
        )
    try:
        placeholders(spec.backup.location)
    except TemplateSyntaxError as exc:
        problems.append(doc.problem(["backup", "location"], f"is a malformed template: {exc}.", ""))
    detect = _StepChecker(doc, problems, StrategySpec(description="", steps=[spec.detect]), None)
    detect.check([spec.detect], ["detect"], set(known))
    if "current_version" not in spec.detect.capture:
        problems.append(
            doc.problem(
                ["detect", "capture"],
                "does not capture `current_version`.",
                "Add a `current_version` capture so the bot can tell what runs now.",
            )
        )
    for name, strategy in spec.strategies.items():
        where: list[str | int] = ["strategies", name]
        checker = _StepChecker(doc, problems, strategy, spec.backup.capture)
        captured = checker.check(strategy.steps, [*where, "steps"], set(known))
        _StepChecker(doc, problems, strategy, None).check(
            strategy.rollback, [*where, "rollback"], captured
        )
        problems += _check_undoes(doc, strategy, where)
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
        versions = strategy.versions
        if versions and versions.source == "archive" and "{version}" not in versions.archive:
            problems.append(
                doc.problem(
                    [*where, "versions", "archive"],
                    "must contain `{version}`.",
                    "Name each version's archive, e.g. {archive_dir}/myst-studio-{version}.tar.",
                )
            )
    return problems


def _check_undoes(
    doc: YamlDocument, strategy: StrategySpec, where: list[str | int]
) -> list[ConfigProblem]:
    """`undoes` belongs to rollback steps and names upgrade steps that change their host."""
    problems = [
        doc.problem(
            [*where, "steps", index, "undoes"],
            "only applies to rollback steps.",
            "Move the step under `rollback:`, or remove `undoes`.",
        )
        for index, step in enumerate(strategy.steps)
        if step.undoes
    ]
    changing = {s.id for s in strategy.steps if s.destructive or s.rollback_needed}
    for index, step in enumerate(strategy.rollback):
        for name in step.undoes:
            if name not in changing:
                problems.append(
                    doc.problem(
                        [*where, "rollback", index, "undoes"],
                        f"names `{name}`, which is not a step of this strategy marked "
                        "`destructive` or `rollback_needed`.",
                        "Name the upgrade steps whose change this step undoes.",
                    )
                )
    return problems


class _StepChecker:
    """The rules pydantic cannot see, for the steps of one strategy."""

    def __init__(
        self,
        doc: YamlDocument,
        problems: list[ConfigProblem],
        strategy: StrategySpec,
        backup: str | None,
    ) -> None:
        self._doc = doc
        self._problems = problems
        self._roles = {SELF, *strategy.roles}
        self._options = set(strategy.options)
        self._backup = backup

    def problem(self, where: list[str | int], problem: str, fix: str) -> None:
        self._problems.append(self._doc.problem(where, problem, fix))

    def check(self, steps: list[StepSpec], where: list[str | int], known: set[str]) -> set[str]:
        """Check steps in order; return the names known after them."""
        captures = {name for step in steps for name in step.capture}
        for index, step in enumerate(steps):
            here: list[str | int] = [*where, index]
            self._check_shape(step, here)
            for text in _templates(step):
                try:
                    names = placeholders(text)
                except TemplateSyntaxError as exc:
                    self.problem(here, f"has a malformed template `{text}`: {exc}.", "")
                    continue
                for name in names:
                    # a name neither known nor captured is an instance variable: the config
                    # check looks for it on each instance
                    if name in captures and name not in known:
                        self.problem(
                            here,
                            f"uses `{{{name}}}` before a step captures it.",
                            "Capture it in an earlier step, or use it later.",
                        )
            known |= set(step.capture)
            for vindex, check in enumerate(step.verify):
                if isinstance(check, CaptureEqualsSpec) and (
                    check.capture_equals.capture not in known
                ):
                    self.problem(
                        [*here, "verify", vindex, "capture_equals", "capture"],
                        f"`{check.capture_equals.capture}` is not captured by this "
                        "step or an earlier one.",
                        "Capture it before comparing it.",
                    )
            role = "" if step.runs_on == SELF else step.runs_on
            needed = backup_name(role, self._backup) if self._backup else None
            if needed and step.destructive and needed not in known:
                self.problem(
                    [*here, "destructive"],
                    f"step `{step.id}` is destructive but no step before it captures "
                    f"the backup of its host (`{needed}`).",
                    "Take and capture that backup in an earlier step.",
                )
        return known

    def _check_shape(self, step: StepSpec, here: list[str | int]) -> None:
        kinds = [
            k
            for k, v in (
                ("shell", step.shell),
                ("docker", step.docker),
                ("http", step.http),
                ("copy", step.copy_),
                ("upload", step.upload),
                ("gate", step.gate),
            )
            if v is not None
        ]
        if len(kinds) != 1:
            self.problem(
                here,
                "must have exactly one of `shell`, `docker`, `http`, `copy`, `upload` or `gate`.",
                "Keep the one action this step performs.",
            )
        if step.follow and step.shell is None:
            self.problem(
                [*here, "follow"],
                "only applies to `shell` steps.",
                "Remove `follow`, or make the step a `shell` step.",
            )
        for key, role in (
            ("runs_on", step.runs_on),
            ("copy", step.copy_.from_ if step.copy_ else SELF),
        ):
            if role not in self._roles:
                self.problem(
                    [*here, key],
                    f"names the role `{role}`, which the strategy does not declare.",
                    f"Use one of: {', '.join(sorted(self._roles))}, or declare it under `roles:`.",
                )
        if step.when:
            self._check_condition(step.when, [*here, "when"])
        for name, pattern in step.capture.items():
            self._problems.extend(
                _check_pattern(self._doc, [*here, "capture", name], pattern, group=name)
            )
        for vindex, check in enumerate(step.verify):
            if isinstance(check, NoLinesMatchingSpec):
                self._problems.extend(
                    _check_pattern(self._doc, [*here, "verify", vindex], check.no_lines_matching)
                )
        if step.follow and step.follow.until:
            self._problems.extend(
                _check_pattern(self._doc, [*here, "follow", "until"], step.follow.until)
            )

    def _check_condition(self, when: ConditionSpec, where: list[str | int]) -> None:
        for key in ("option", "unless_option"):
            name = getattr(when, key)
            if name is not None and name not in self._options:
                self.problem(
                    [*where, key],
                    f"names the option `{name}`, which the strategy does not declare.",
                    "Declare it under `options:`.",
                )
        for key in ("target_below", "target_at_least", "from_below"):
            text = getattr(when, key)
            if text is not None:
                try:
                    parse_version(text)
                except InvalidVersion as exc:
                    self.problem([*where, key], exc.problem, exc.fix)


def _names(template: str) -> list[str]:
    try:
        return placeholders(template)
    except TemplateSyntaxError:
        return []  # reported where the template is checked


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
    if step.copy_:
        texts += [step.copy_.source, step.copy_.dest]
    if step.upload:
        texts += [step.upload.source, step.upload.dest]
    if step.gate:
        texts.append(step.gate)
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
        versions=rb.VersionSource(
            kind=spec.versions.source, versions=spec.versions.list, archive=spec.versions.archive
        ),
        defaults=dict(spec.defaults),
        migrations={version: tuple(commands) for version, commands in spec.migrations.items()},
        backup_capture=spec.backup.capture,
        backup_location=spec.backup.location,
        strategies={name: _strategy(name, s) for name, s in spec.strategies.items()},
        default_strategy=spec.default_strategy,
    )


def _strategy(name: str, spec: StrategySpec) -> rb.Strategy:
    versions = spec.versions
    return rb.Strategy(
        name=name,
        description=spec.description,
        expected_outage=spec.expected_outage,
        steps=tuple(_step(x) for x in spec.steps),
        rollback=tuple(_step(x) for x in spec.rollback),
        auto_rollback=spec.auto_rollback,
        roles=dict(spec.roles),
        rollback_scope=spec.rollback_scope,
        options={
            k: rb.StrategyOption(description=o.description, default=o.default)
            for k, o in spec.options.items()
        },
        versions=rb.VersionSource(
            kind=versions.source, versions=versions.list, archive=versions.archive
        )
        if versions
        else None,
    )


def _step(spec: StepSpec) -> rb.Step:
    return rb.Step(
        id=spec.id,
        title=spec.title,
        action=_action(spec),
        timeout=spec.timeout,
        captures=tuple(rb.Capture(name=k, pattern=v) for k, v in spec.capture.items()),
        verifications=tuple(_verification(check) for check in spec.verify),
        destructive=spec.destructive,
        rollback_needed=spec.rollback_needed,
        hide_output=spec.hide_output,
        irreversible=spec.irreversible,
        for_each_migration=spec.for_each == "migration",
        role=rb.StepRole(spec.role) if spec.role else None,
        runs_on="" if spec.runs_on == SELF else spec.runs_on,
        when=rb.Condition(**spec.when.model_dump()) if spec.when else None,
        undoes=tuple(spec.undoes),
    )


def _action(spec: StepSpec) -> rb.Action:
    if spec.shell is not None:
        follow = spec.follow and rb.Follow(
            until=spec.follow.until,
            max_lines=spec.follow.max_lines,
            max_seconds=spec.follow.max_time,
        )
        return rb.ShellAction(command=spec.shell, follow=follow or None)
    if spec.docker is not None:
        ((operation, arguments),) = spec.docker.items()
        return rb.DockerAction(operation=operation, arguments=dict(arguments))
    if spec.http is not None:
        return rb.HttpAction(url=spec.http.url, expect_status=spec.http.expect_status)
    if spec.copy_ is not None:
        source_role = "" if spec.copy_.from_ == SELF else spec.copy_.from_
        return rb.CopyAction(
            source_role=source_role, source=spec.copy_.source, dest=spec.copy_.dest
        )
    if spec.upload is not None:
        return rb.UploadAction(source=spec.upload.source, dest=spec.upload.dest)
    assert spec.gate is not None  # _check_shape guarantees exactly one action
    return rb.GateAction(prompt=spec.gate)


def _verification(check: NoLinesMatchingSpec | CaptureEqualsSpec) -> rb.Verification:
    if isinstance(check, NoLinesMatchingSpec):
        return rb.NoLinesMatching(
            pattern=check.no_lines_matching,
            description=check.description or f"no line matches `{check.no_lines_matching}`",
        )
    args = check.capture_equals
    return rb.CaptureEquals(
        capture=args.capture,
        expected=args.expected,
        description=check.description or f"{args.capture} is {args.expected}",
    )
