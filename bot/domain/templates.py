"""Command templates: `{name}` placeholders filled with values as data, never as code.

A value that goes into a shell command is quoted with `shlex.quote`, whatever it contains, so a
version such as `3.9.1; rm -rf /` would reach the shell as one harmless word (and versions are
refused long before that). Attribute access, indexing, conversions and format specs are not
template syntax here: a runbook that uses them is refused when it is loaded.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Callable, Mapping

_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_FORMATTER = string.Formatter()

Quote = Callable[[str], str]


def shell_quote(value: str) -> str:
    return shlex.quote(value)


def as_is(value: str) -> str:
    return value


class TemplateSyntaxError(ValueError):
    """The template is not made of text and `{name}` placeholders."""


def placeholders(template: str) -> list[str]:
    """The names a template uses, in order of appearance; raise TemplateSyntaxError if malformed."""
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise TemplateSyntaxError(f"{exc}; write literal braces as {{{{ and }}}}") from None
    names = []
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if not _NAME.fullmatch(name) or spec or conversion:
            raise TemplateSyntaxError(
                f"`{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}`"
                " is not a plain placeholder; use `{name}` with lower-case letters, digits and _"
            )
        names.append(name)
    return names


def render(template: str, values: Mapping[str, str], *, quote: Quote = shell_quote) -> str:
    """Fill every placeholder; a missing value is a KeyError (the runbook check prevents it)."""
    out = []
    for literal, name, _spec, _conv in _FORMATTER.parse(template):
        out.append(literal)
        if name is not None:
            out.append(quote(values[name]))
    return "".join(out)


def render_preview(template: str, values: Mapping[str, str], *, quote: Quote = shell_quote) -> str:
    """Like `render`, but a value not known yet (captured later) shows as `<name>`."""
    out = []
    for literal, name, _spec, _conv in _FORMATTER.parse(template):
        out.append(literal)
        if name is not None:
            out.append(quote(values[name]) if name in values else f"<{name}>")
    return "".join(out)
