"""The runbook file's schema: what a runbook YAML may say, checked by pydantic.

`bot.runbooks` loads a file with it, then checks what a schema cannot see.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.domain import runbook as rb
from bot.domain.runbook import DockerOperation
from bot.durations import Duration

_ID = r"^[a-z0-9][a-z0-9-]*$"
_ROLE = r"^[a-z][a-z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


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


class CopySpec(_Model):
    from_: Annotated[str, Field(alias="from")] = "self"  # the role holding the file
    source: str
    dest: str


class UploadSpec(_Model):
    source: str
    dest: str


class ConditionSpec(_Model):
    option: str | None = None
    unless_option: str | None = None
    target_below: str | None = None
    target_at_least: str | None = None
    from_below: str | None = None


class StepSpec(_Model):
    id: Annotated[str, Field(pattern=_ID)]
    title: str
    shell: str | None = None
    docker: dict[DockerOperation, dict[str, str]] | None = None
    http: HttpSpec | None = None
    copy_: Annotated[CopySpec | None, Field(alias="copy")] = None
    upload: UploadSpec | None = None
    gate: str | None = None
    runs_on: str = "self"
    when: ConditionSpec | None = None
    follow: FollowSpec | None = None
    timeout: Duration = 300.0
    capture: dict[str, str] = {}
    verify: list[NoLinesMatchingSpec | CaptureEqualsSpec] = []
    destructive: bool = False
    rollback_needed: bool = False
    hide_output: bool = False
    irreversible: bool = False
    for_each: Literal["migration"] | None = None
    role: Literal["startup_log"] | None = None
    undoes: list[str] = []

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


class VersionsSpec(_Model):
    source: Literal["registry", "list", "archive"]
    list: tuple[str, ...] = ()
    archive: str = ""  # with source: archive, the path of each version's image archive


class OptionSpec(_Model):
    description: str
    default: bool = False


class StrategySpec(_Model):
    description: str
    expected_outage: str = "unknown"
    auto_rollback: bool = False
    roles: dict[Annotated[str, Field(pattern=_ROLE)], str] = {}
    rollback_scope: Literal["all", "since_gate"] = "all"
    options: dict[Annotated[str, Field(pattern=_ROLE)], OptionSpec] = {}
    versions: VersionsSpec | None = None
    steps: Annotated[list[StepSpec], Field(min_length=1)]
    rollback: list[StepSpec] = []


class BackupSpec(_Model):
    capture: str = "backup_path"
    location: str = ""  # where backups go, for the plan (e.g. "{home}/backup/")


class RunbookSpec(_Model):
    product: Annotated[str, Field(pattern=_ID)]
    title: str
    aliases: list[Annotated[str, Field(pattern=_ID)]] = []
    versions: VersionsSpec
    defaults: dict[str, str] = {}
    migrations: dict[str, list[str]] = {}
    backup: BackupSpec = BackupSpec()
    detect: StepSpec
    default_strategy: str
    strategies: Annotated[dict[str, StrategySpec], Field(min_length=1)]
