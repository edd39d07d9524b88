"""Read a YAML file and remember the line of every key, so validation errors can point at it."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from bot.domain.errors import ConfigError, ConfigProblem

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDocument:
    """The parsed data of one file and the line (1-based) of each key path in it."""

    path: Path
    data: Any
    lines: dict[Location, int]

    def line_of(self, location: Sequence[str | int]) -> int | None:
        """The line of `location`, or of its nearest parent that has one."""
        loc = tuple(location)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return None

    def problem(self, location: Sequence[str | int], problem: str, fix: str) -> ConfigProblem:
        return ConfigProblem(
            file=str(self.path),
            where=dotted(location),
            line=self.line_of(location),
            problem=problem,
            fix=fix,
        )


def dotted(location: Sequence[str | int]) -> str:
    out = ""
    for part in location:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load(path: Path) -> YamlDocument:
    """Parse `path`; unreadable files, bad YAML and duplicate keys are `ConfigError`s."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = ConfigProblem(
            str(path),
            "",
            None,
            f"cannot be read ({exc.strerror}).",
            "Check the path and its permissions.",
        )
        raise ConfigError([problem]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc)
        problem = ConfigProblem(
            str(path),
            "",
            line,
            f"is not valid YAML: {reason}.",
            "Fix the indentation or quoting on that line.",
        )
        raise ConfigError([problem]) from exc
    doc = YamlDocument(path, data, {})
    duplicates: list[ConfigProblem] = []
    if node is not None:
        _walk(node, (), doc, duplicates)
    if duplicates:
        raise ConfigError(duplicates)
    return doc


def _walk(
    node: yaml.Node, location: Location, doc: YamlDocument, duplicates: list[ConfigProblem]
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            here = (*location, key)
            if key in seen:
                duplicates.append(
                    ConfigProblem(
                        str(doc.path),
                        dotted(here),
                        key_node.start_mark.line + 1,
                        "is set twice.",
                        "Keep one of the two entries.",
                    )
                )
            seen.add(key)
            doc.lines[here] = key_node.start_mark.line + 1
            _walk(value_node, here, doc, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            here = (*location, index)
            doc.lines[here] = item.start_mark.line + 1
            _walk(item, here, doc, duplicates)


def problems_from(
    doc: YamlDocument, error: ValidationError, model: type[BaseModel]
) -> list[ConfigProblem]:
    """Turn pydantic's errors into problems that name line, key, what is wrong and the fix."""
    problems = []
    for item in error.errors(include_url=False):
        location = [p for p in item["loc"] if isinstance(p, str | int)]
        fix = _fix(item, location)
        if item["type"] == "extra_forbidden":
            fix += _did_you_mean(model, location)
        problems.append(doc.problem(location, _sentence(item), fix))
    return problems


def _did_you_mean(model: type[BaseModel], location: Sequence[str | int]) -> str:
    """Suggest the known setting closest to a misspelt key, by walking the model's fields."""
    candidates: list[Any] = [model]
    for part in location[:-1]:
        found: list[Any] = []
        for kind in candidates:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                field = kind.model_fields.get(str(part))
                if field is not None:
                    found.extend(_unwrap(field.annotation))
            elif get_origin(kind) in (list, tuple, dict):
                found.extend(_unwrap(get_args(kind)[-1]))
        candidates = found
    names = [
        n
        for k in candidates
        if isinstance(k, type) and issubclass(k, BaseModel)
        for n in k.model_fields
    ]
    close = difflib.get_close_matches(str(location[-1]), names, n=1)
    return f" Did you mean `{close[0]}`?" if close else ""


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional, unions and Annotated."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return [t for arg in get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _sentence(item: Any) -> str:
    message = str(item["msg"])
    if item["type"] == "missing":
        return "is required but missing."
    if item["type"] == "extra_forbidden":
        return "is not a known setting."
    message = message.removeprefix("Value error, ")
    text = message[0].lower() + message[1:]
    if "input" in item and item["type"] not in {"value_error", "assertion_error"}:
        shown = repr(item["input"])
        text += f" (got {shown if len(shown) < 60 else shown[:57] + '...'})"
    return text.rstrip(".") + "."


def _fix(item: Any, location: Sequence[str | int]) -> str:
    kind = item["type"]
    name = location[-1] if location else ""
    if kind == "missing":
        return f"Add `{name}:` here."
    if kind == "extra_forbidden":
        return "Remove it or correct its spelling."
    if kind.startswith(("int_", "float_")):
        return "Write a number."
    if kind.startswith("bool"):
        return "Write true or false."
    if kind in {"literal_error", "enum"}:
        return "Use one of the values listed."
    if kind == "value_error":
        return ""
    return "Correct the value."
