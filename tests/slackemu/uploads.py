"""The file upload flow Slack requires since `files.upload` was retired.

https://docs.slack.dev/reference/methods/files.getUploadURLExternal: "1. Call
files.getUploadURLExternal, which returns an upload URL and a file ID. 2. Upload a file by making a
POST request to the upload URL ... Files can be sent as raw bytes or can be multipart form encoded."
3. https://docs.slack.dev/reference/methods/files.completeUploadExternal shares the files, with
`file_not_found` ("Could not find the file from the upload ticket") when a file never arrived.

How Slack's upload host answers a body of the wrong length is not documented; the emulator refuses
it with HTTP 400 and keeps nothing, so the completion that follows fails with `file_not_found`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tests.slackemu import wire
from tests.slackemu.methods import Args, Context, Handler, SlackError, channel_arg, text_arg
from tests.slackemu.workspace import Upload, Workspace

UPLOAD_PATH = "/upload/v1/"


def get_upload_url(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    filename = text_arg(args, "filename")
    if not filename:
        raise SlackError("invalid_arguments")
    try:
        length = int(args.get("length") or 0)
    except ValueError as exc:
        raise SlackError("invalid_arguments") from exc
    if length <= 0:
        # "missing_argument: ... Typically only occurs when the `length` provided is 0."
        raise SlackError("missing_argument")
    file_id = ws.new_id("F")
    ws.uploads[file_id] = Upload(id=file_id, filename=filename, length=length)
    return {"ok": True, "upload_url": f"{context.origin}{UPLOAD_PATH}{file_id}", "file_id": file_id}


def receive_bytes(ws: Workspace, path: str, content_type: str, body: bytes) -> tuple[int, str]:
    """The upload host's side: store the bytes posted to an upload URL. Returns (status, text)."""
    file_id = path.removeprefix(UPLOAD_PATH)
    upload = ws.uploads.get(file_id)
    if upload is None or upload.shared:
        return 404, "Not Found"
    content = _file_part(content_type, body)
    if len(content) != upload.length:
        return 400, f"Bad Request: expected {upload.length} bytes, got {len(content)}"
    ws.uploads[file_id] = dataclasses.replace(upload, content=content)
    return 200, f"OK - {len(content)}"


def _file_part(content_type: str, body: bytes) -> bytes:
    if not content_type.startswith("multipart/form-data"):
        return body
    fields = wire.multipart_fields(content_type, body)
    content = fields.get("file", next((v for v in fields.values() if isinstance(v, bytes)), b""))
    return content if isinstance(content, bytes) else content.encode()


def complete_upload(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    raw = args.get("files")
    try:
        files = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise SlackError("invalid_arguments") from exc
    if not isinstance(files, list) or not files or not all(isinstance(f, dict) for f in files):
        raise SlackError("invalid_arguments")
    channels = _channels(args)
    thread_ts = text_arg(args, "thread_ts") or None
    comment = text_arg(args, "initial_comment")
    done: list[Upload] = []
    for entry in files:
        upload = ws.uploads.get(str(entry.get("id", "")))
        if upload is None or upload.content is None:
            raise SlackError("file_not_found")
        done.append(dataclasses.replace(upload, title=entry.get("title") or upload.filename))
    for upload in done:
        ws.uploads[upload.id] = dataclasses.replace(
            upload,
            shared=True,
            channel=channels[0] if channels else None,
            thread_ts=thread_ts,
            initial_comment=comment,
        )
    # Sharing posts one message per channel carrying the files, with the comment as its text.
    for channel in channels:
        ws.post(
            channel=channel,
            text=comment or "",
            blocks=[],
            thread_ts=thread_ts,
            files=[u.id for u in done],
        )
    return {
        "ok": True,
        "files": [
            {"id": u.id, "title": u.title, "name": u.filename, "size": u.length} for u in done
        ],
    }


def _channels(args: Args) -> list[str]:
    if args.get("channel_id"):
        return [channel_arg(args, "channel_id", error="invalid_channel")]
    listed = text_arg(args, "channels") or ""
    wanted = [c.strip() for c in listed.split(",") if c.strip()]
    return [channel_arg({"channel": c}, error="invalid_channel") for c in wanted]


HANDLERS: dict[str, Handler] = {
    "files.getUploadURLExternal": get_upload_url,
    "files.completeUploadExternal": complete_upload,
}
