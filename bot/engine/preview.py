"""What a step will do, in one line, with the values known when it is shown."""

from __future__ import annotations

from collections.abc import Mapping

from bot.domain.runbook import (
    CopyAction,
    DockerAction,
    GateAction,
    HttpAction,
    ShellAction,
    Step,
    UploadAction,
)
from bot.domain.templates import as_is, render_preview


def preview(step: Step, values: Mapping[str, str]) -> str:
    """What the step will do, with the values known now; later captures show as <name>."""
    action = step.action
    if isinstance(action, ShellAction):
        return render_preview(action.command, values)
    if isinstance(action, DockerAction):
        args = " ".join(render_preview(v, values, quote=as_is) for v in action.arguments.values())
        return f"docker {action.operation} {args}"
    if isinstance(action, HttpAction):
        return f"GET {render_preview(action.url, values, quote=as_is)}"
    if isinstance(action, CopyAction):
        source = render_preview(action.source, values, quote=as_is)
        where = f"{action.source_role}:" if action.source_role else "self:"
        return f"copy {where}{source} to {render_preview(action.dest, values, quote=as_is)}"
    if isinstance(action, UploadAction):
        return (
            f"upload {render_preview(action.source, values, quote=as_is)} to "
            f"{render_preview(action.dest, values, quote=as_is)}"
        )
    if isinstance(action, GateAction):
        return f"wait for approval: {render_preview(action.prompt, values, quote=as_is)}"
    return f"upgrade member {action.index + 1} of the fleet"
