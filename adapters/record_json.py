"""Domain records to JSON-ready values and back, losslessly, through pydantic `TypeAdapter`s.

The records stay plain frozen dataclasses; pydantic reads their type hints, so a field added to a
record is stored without a codec to update. Actions and verifications are unions told apart by
their `kind` literal, which is always written, so reading picks the one matching member.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from bot.domain.errors import StoreUnavailable
from bot.domain.output import CommandResult
from bot.domain.plan import Plan
from bot.domain.run import VerificationResult

T = TypeVar("T")

_PLAN = TypeAdapter(Plan)
_RESULT = TypeAdapter(CommandResult | None)
_CAPTURES = TypeAdapter(dict[str, str])
_VERIFICATIONS = TypeAdapter(tuple[VerificationResult, ...])


def dump_plan(plan: Plan) -> dict[str, Any]:
    dumped: dict[str, Any] = _PLAN.dump_python(plan, mode="json")
    return dumped


def load_plan(data: Any, *, run_id: int) -> Plan:
    return _load(_PLAN, data, f"the plan of run #{run_id}")


def dump_result(result: CommandResult | None) -> dict[str, Any] | None:
    dumped: dict[str, Any] | None = _RESULT.dump_python(result, mode="json")
    return dumped


def load_result(data: Any, *, where: str) -> CommandResult | None:
    return _load(_RESULT, data, where)


def dump_captures(captures: Mapping[str, str]) -> dict[str, str]:
    dumped: dict[str, str] = _CAPTURES.dump_python(dict(captures), mode="json")
    return dumped


def load_captures(data: Any, *, where: str) -> dict[str, str]:
    return _load(_CAPTURES, data, where)


def dump_verifications(verifications: tuple[VerificationResult, ...]) -> list[dict[str, Any]]:
    dumped: list[dict[str, Any]] = _VERIFICATIONS.dump_python(verifications, mode="json")
    return dumped


def load_verifications(data: Any, *, where: str) -> tuple[VerificationResult, ...]:
    return _load(_VERIFICATIONS, data, where)


def _load(adapter: TypeAdapter[T], data: Any, what: str) -> T:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        # A stored document that no longer fits the records: written by a newer or older bot.
        first = exc.errors()[0]
        place = ".".join(str(part) for part in first["loc"]) or "(top)"
        raise StoreUnavailable(
            f"The stored copy of {what} cannot be read by this version of the bot "
            f"({exc.error_count()} problem(s), first at {place}: {first['msg']})."
        ) from exc
