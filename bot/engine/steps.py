"""Run one runbook step on one instance: the action, then its captures and verifications.

Captures and the checks over output lines are applied while the output streams, so they see every
line even when only the head and tail of a long output are kept.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from bot.domain.errors import (
    ConnectionLost,
    FileTransferFailed,
    HttpCheckFailed,
    OperationalError,
    StepTimeout,
)
from bot.domain.output import CommandResult, LineSink, Output, OutputCollector, Stream
from bot.domain.ports import ContainerEngine
from bot.domain.run import VerificationResult
from bot.domain.runbook import (
    CaptureEquals,
    CopyAction,
    DockerAction,
    DockerOperation,
    HttpAction,
    NoLinesMatching,
    ShellAction,
    Step,
    UploadAction,
)
from bot.domain.templates import as_is, render
from bot.engine.session import InstanceSession, Ports, Sessions

EVIDENCE_LINES = 5
HIDDEN = Output(head="[not kept: this step's output may hold secrets]")
UPLOAD_CHUNK = 1024 * 1024
TransferProgress = Callable[[int, int | None], None]  # (bytes done, total if known)
HTTP_ATTEMPT_TIMEOUT = 10.0
HTTP_RETRY_INTERVAL = 2.0


@dataclass(frozen=True, kw_only=True)
class StepOutcome:
    """What a step did: its output, the values it captured, its checks, and why it failed."""

    result: CommandResult | None
    captures: Mapping[str, str] = field(default_factory=dict)
    verifications: tuple[VerificationResult, ...] = ()
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


class _Watch:
    """The line sink of one step: captures, line checks, the end of a followed log."""

    def __init__(self, step: Step, forward: LineSink | None) -> None:
        self._captures = {c.name: re.compile(c.pattern) for c in step.captures}
        self._checks = [
            (check, re.compile(check.pattern))
            for check in step.verifications
            if isinstance(check, NoLinesMatching)
        ]
        follow = step.action.follow if isinstance(step.action, ShellAction) else None
        self._until = re.compile(follow.until) if follow and follow.until else None
        self._max_lines = follow.max_lines if follow else None
        self._forward = forward
        self.found: dict[str, str] = {}
        self.matching: dict[str, list[str]] = {c.pattern: [] for c, _ in self._checks}
        self.match_counts: dict[str, int] = {c.pattern: 0 for c, _ in self._checks}
        self.lines = 0
        self.reached_end_mark = False

    def __call__(self, stream: Stream, line: str) -> bool:
        self.lines += 1
        for name, pattern in self._captures.items():
            if name not in self.found and (match := pattern.search(line)):
                self.found[name] = match.group(name)
        for check, pattern in self._checks:
            if pattern.search(line):
                self.match_counts[check.pattern] += 1
                if len(self.matching[check.pattern]) < EVIDENCE_LINES:
                    self.matching[check.pattern].append(line)
        if self._forward is not None:
            self._forward(stream, line)
        if self._until is not None and self._until.search(line):
            self.reached_end_mark = True
            return True
        return self._max_lines is not None and self.lines >= self._max_lines

    def missing_captures(self) -> list[str]:
        return [name for name in self._captures if name not in self.found]


class StepExecutor:
    """Executes steps through the ports; never raises for a failing step, it reports it."""

    def __init__(self, ports: Ports) -> None:
        self._ports = ports

    def run(
        self,
        step: Step,
        values: Mapping[str, str],
        sessions: Sessions,
        on_line: LineSink | None = None,
        progress: TransferProgress | None = None,
    ) -> StepOutcome:
        # a step whose output may hold secrets: no line leaves this function, none is kept
        watch = _Watch(step, None if step.hide_output else on_line)
        action = step.action
        session = sessions.get(step.runs_on)
        result: CommandResult | None
        try:
            if isinstance(action, ShellAction):
                result, error = self._shell(step, action, values, session, watch)
            elif isinstance(action, DockerAction):
                result, error = self._docker(action, values, session, watch)
            elif isinstance(action, HttpAction):
                result, error, watch = self._http(step, action, values, session, on_line)
            elif isinstance(action, CopyAction | UploadAction):
                result, error = self._transfer(action, values, sessions, session, watch, progress)
            else:
                raise AssertionError("gates are the runner's business, not a step to execute")
        except OperationalError as exc:
            return StepOutcome(result=exc.result, error=str(exc))
        if not error and (missing := watch.missing_captures()):
            names = ", ".join(f"`{name}`" for name in missing)
            error = f"the output did not show {names}."
        if step.hide_output and result is not None:
            result = replace(result, stdout=HIDDEN, stderr=HIDDEN)
        captures = dict(watch.found)
        checks = tuple(self._verify(step, watch, {**values, **captures}))
        if not error and (failed := [c for c in checks if not c.passed]):
            error = "verification failed: " + "; ".join(c.evidence for c in failed)
        return StepOutcome(result=result, captures=captures, verifications=checks, error=error)

    def _shell(
        self,
        step: Step,
        action: ShellAction,
        values: Mapping[str, str],
        session: InstanceSession,
        watch: _Watch,
    ) -> tuple[CommandResult, str]:
        command = render(action.command, values)
        follow = action.follow
        # A followed log that reaches its own time limit has given its excerpt; the step's
        # timeout, when it is the shorter, is a timeout like any other.
        follow_limited = follow is not None and follow.max_seconds <= step.timeout
        timeout = min(step.timeout, follow.max_seconds) if follow else step.timeout
        try:
            result = session.shell().run(command, timeout=timeout, on_line=watch)
        except StepTimeout as exc:
            if not follow_limited or exc.result is None:
                raise
            result = replace(exc.result, stopped_early=True)
        except ConnectionLost:
            session.forget_shell()
            raise
        if not result.ok:
            return result, f"`{command}` exited with status {result.exit_code}."
        if follow and follow.until and not watch.reached_end_mark:
            return result, (
                f"no line matched `{follow.until}` within {follow.max_seconds:g}s "
                f"and {follow.max_lines} lines."
            )
        return result, ""

    def _docker(
        self,
        action: DockerAction,
        values: Mapping[str, str],
        session: InstanceSession,
        watch: _Watch,
    ) -> tuple[CommandResult, str]:
        args = {k: render(v, values, quote=as_is) for k, v in action.arguments.items()}
        described = f"docker {action.operation} " + " ".join(args.values())
        started = self._ports.clock.now()
        text = _docker_call(session.engine(), action.operation, args)
        result = _text_result(
            session.instance.address, described, text, started, self._ports.clock.now(), watch
        )
        return result, ""

    def _http(
        self,
        step: Step,
        action: HttpAction,
        values: Mapping[str, str],
        session: InstanceSession,
        on_line: LineSink | None,
    ) -> tuple[CommandResult | None, str, _Watch]:
        """Poll the page until it answers as expected with every capture, or time runs out."""
        clock = self._ports.clock
        url = render(action.url, values, quote=as_is)
        started = clock.now()
        result: CommandResult | None = None
        while True:
            watch = _Watch(step, on_line)
            remaining = step.timeout - (clock.now() - started).total_seconds()
            try:
                page = self._ports.http.get(url, timeout=min(HTTP_ATTEMPT_TIMEOUT, remaining))
                result = _text_result(
                    session.instance.address,
                    f"GET {url}",
                    page.body,
                    started,
                    clock.now(),
                    watch,
                    exit_code=0 if page.status == action.expect_status else page.status,
                )
                if page.status != action.expect_status:
                    problem = f"{url} answered {page.status}, not {action.expect_status}."
                elif missing := watch.missing_captures():
                    problem = f"{url} did not show {', '.join(missing)}."
                else:
                    return result, "", watch
            except HttpCheckFailed as exc:
                problem = str(exc)
            remaining = step.timeout - (clock.now() - started).total_seconds()
            if remaining <= 0:
                return result, f"{problem} (still so after {step.timeout:g}s)", watch
            clock.sleep(min(HTTP_RETRY_INTERVAL, remaining))

    def _transfer(
        self,
        action: CopyAction | UploadAction,
        values: Mapping[str, str],
        sessions: Sessions,
        session: InstanceSession,
        watch: _Watch,
        progress: TransferProgress | None,
    ) -> tuple[CommandResult, str]:
        """Stream a file into this step's host: from another host (copy) or from the bot."""
        clock = self._ports.clock
        started = clock.now()
        source = render(action.source, values, quote=as_is)
        dest = posixpath.join(render(action.dest, values, quote=as_is), posixpath.basename(source))
        if isinstance(action, CopyAction):
            origin = sessions.get(action.source_role)
            chunks: Iterator[bytes] = origin.shell().read_file(source)
            total = None
            where = f"{origin.instance.address}:{source}"
        else:
            total, chunks, where = _local_file(source)
        report = None if progress is None else (lambda done: progress(done, total))
        try:
            written = session.shell().write_file(dest, chunks, progress=report)
        finally:
            close = getattr(chunks, "close", None)  # a failed write must not leave it open
            if close is not None:
                close()
        text = (
            f"copied {where} to {session.instance.address}:{dest}\n"
            f"{written} bytes\ndestination: {dest}"
        )
        result = _text_result(
            session.instance.address, f"copy {where} {dest}", text, started, clock.now(), watch
        )
        return result, ""

    def _verify(
        self, step: Step, watch: _Watch, values: Mapping[str, str]
    ) -> list[VerificationResult]:
        results = []
        for check in step.verifications:
            if isinstance(check, NoLinesMatching):
                count = watch.match_counts[check.pattern]
                evidence = f"{count} of {watch.lines} lines match `{check.pattern}`"
                if count and not step.hide_output:
                    evidence += ": " + " | ".join(watch.matching[check.pattern])
                results.append(
                    VerificationResult(
                        description=check.description, passed=count == 0, evidence=evidence
                    )
                )
            elif isinstance(check, CaptureEquals):
                expected = render(check.expected, values, quote=as_is)
                actual = values.get(check.capture)
                if actual is None:
                    evidence = f"{check.capture} was not found (expected {expected})"
                elif actual == expected:
                    evidence = f"{check.capture} is {actual}"
                else:
                    evidence = f"{check.capture} is {actual}, expected {expected}"
                results.append(
                    VerificationResult(
                        description=check.description, passed=actual == expected, evidence=evidence
                    )
                )
        return results


def _docker_call(engine: ContainerEngine, operation: DockerOperation, args: dict[str, str]) -> str:
    """Call the engine and describe the answer as lines, so captures apply as to any output."""
    if operation is DockerOperation.INSPECT:
        info = engine.container(args["container"])
        lines = [f"container: {info.name}", f"status: {info.status}", f"image: {info.image_id}"]
        return "\n".join(lines + [f"tag: {tag}" for tag in info.image_tags])
    if operation is DockerOperation.IMAGES:
        images = engine.images(args["repository"])
        return "\n".join(f"{tag} {image.id}" for image in images for tag in image.tags)
    if operation is DockerOperation.PULL:
        image = engine.pull(args["image"])
        return f"pulled {args['image']} ({image.id})"
    image = engine.tag(args["source"], args["target"])
    return f"tagged {args['source']} as {args['target']} ({image.id})"


def _local_file(path: str) -> tuple[int, Iterator[bytes], str]:
    """A file on the bot's machine, streamed in chunks."""
    try:
        size = os.path.getsize(path)
        handle = open(path, "rb")  # noqa: SIM115 - closed by the generator below
    except OSError as exc:
        raise FileTransferFailed(
            f"Cannot read {path} on the bot's machine ({exc.strerror}). Check the path and "
            "that the bot may read it.",
            host="localhost",
        ) from exc

    def chunks() -> Iterator[bytes]:
        with handle:
            while chunk := handle.read(UPLOAD_CHUNK):
                yield chunk

    return size, chunks(), f"localhost:{path}"


def _text_result(
    host: str,
    command: str,
    text: str,
    started: datetime,
    finished: datetime,
    watch: _Watch,
    exit_code: int = 0,
) -> CommandResult:
    collector = OutputCollector(watch)
    collector.feed(Stream.STDOUT, text.encode())
    stdout, stderr = collector.finish()
    return CommandResult(
        host=host,
        command=command,
        exit_code=exit_code,
        stdout=stdout,
        stderr=stderr,
        started_at=started,
        duration=(finished - started).total_seconds(),
    )
