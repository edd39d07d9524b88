"""Reading requests the way Slack's API host does: the token, and arguments from any body kind.

Slack accepts `application/x-www-form-urlencoded`, `application/json` and `multipart/form-data`
posts, and the token as `Authorization: Bearer` or as a `token` argument
(https://docs.slack.dev/apis/web-api/#basics).
"""

from __future__ import annotations

import contextlib
import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl


def bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


# Arguments a form post carries as JSON text; recorded (and handled) as the objects they encode.
JSON_FIELDS = ("blocks", "attachments", "view", "files")


def decode_json_fields(args: dict[str, Any]) -> None:
    for name in JSON_FIELDS:
        value = args.get(name)
        # Text that does not parse stays text, so the method answers with Slack's format error.
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                args[name] = json.loads(value)


def parse_body(content_type: str, body: bytes) -> dict[str, Any] | None:
    """Arguments from a JSON, form-encoded or multipart body; None when JSON does not parse."""
    if not body:
        return {}
    if content_type.startswith("application/json"):
        try:
            value = json.loads(body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    if content_type.startswith("multipart/form-data"):
        return multipart_fields(content_type, body)
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


def multipart_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """Fields of a multipart body: text for plain fields, bytes for file parts."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload if part.get_filename() else payload.decode()
    return fields
