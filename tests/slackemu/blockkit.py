"""Block Kit limits as Slack documents them, checked the way Slack's Web API reports them.

Each limit below comes from Slack's reference pages (docs.slack.dev), read on the date of writing:

- Blocks overview: "up to 50 blocks in each message, and 100 blocks in modals or Home tabs"
  https://docs.slack.dev/reference/block-kit/blocks
- Home tab views: "blocks ... Max of 100 blocks"
  https://docs.slack.dev/reference/views/home-tab-views
- Section: `text` 1..3000 characters; `fields` at most 10 items of at most 2000 characters;
  `block_id` at most 255 https://docs.slack.dev/reference/block-kit/blocks/section-block
- Header: plain_text `text` at most 150 https://docs.slack.dev/reference/block-kit/blocks/header-block
- Context: `elements` at most 10 https://docs.slack.dev/reference/block-kit/blocks/context-block
- Actions: `elements` at most 25 https://docs.slack.dev/reference/block-kit/blocks/actions-block
- Button: plain_text `text` at most 75, `value` at most 2000, `action_id` at most 255, `url` at
  most 3000 https://docs.slack.dev/reference/block-kit/block-elements/button-element
- Text object: `type` is `plain_text` or `mrkdwn`, `text` 1..3000
  https://docs.slack.dev/reference/block-kit/composition-objects/text-object
- Markdown block: `text` at most 12,000 https://docs.slack.dev/reference/block-kit/blocks/markdown-block

The wording of the messages ("no more than 50 items allowed [json-pointer:/blocks]", "must be less
than 3001 characters [json-pointer:/blocks/0/text/text]", "unsupported type: x
[json-pointer:/blocks/0/type]") is the wording Slack's API answers with in recorded responses; the
checker reports every problem it finds, in document order, like Slack does.
"""

from __future__ import annotations

import json
from typing import Any

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
SECTION_TEXT = 3000
SECTION_FIELDS = 10
FIELD_TEXT = 2000
HEADER_TEXT = 150
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
BUTTON_URL = 3000
ACTION_ID = 255
BLOCK_ID = 255
TEXT_OBJECT = 3000
MARKDOWN_TEXT = 12000

TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})
# Block types Slack accepts today; only those with documented limits are checked in depth.
BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "context_actions",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)


class BlocksFormatError(ValueError):
    """`blocks` was not a JSON array: Slack answers `invalid_blocks_format` before any rule."""


def parse_blocks(raw: object) -> list[Any]:
    """`blocks` as a list: a form post carries it as a JSON string, a JSON post as a list."""
    value = raw
    if isinstance(raw, str | bytes):
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise BlocksFormatError(str(exc)) from exc
    if not isinstance(value, list):
        raise BlocksFormatError(f"expected an array, got {type(value).__name__}")
    return value


def check_blocks(
    blocks: list[Any], *, pointer: str = "/blocks", limit: int = MESSAGE_BLOCKS
) -> list[str]:
    """Every rule `blocks` breaks, as Slack words it (without the "[ERROR] " prefix)."""
    problems: list[str] = []
    if len(blocks) > limit:
        problems.append(_too_many(limit, pointer))
    for index, block in enumerate(blocks):
        problems.extend(_check_block(block, f"{pointer}/{index}"))
    return problems


def _too_many(limit: int, pointer: str) -> str:
    return f"no more than {limit} items allowed [json-pointer:{pointer}]"


def _too_long(limit: int, pointer: str) -> str:
    # Slack states the bound as "less than limit+1", which is how its validator words a maximum.
    return f"must be less than {limit + 1} characters [json-pointer:{pointer}]"


def _schema(pointer: str) -> str:
    return f"failed to match all allowed schemas [json-pointer:{pointer}]"


def _check_string(value: object, limit: int, pointer: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, str):
        return [_schema(pointer)]
    return [_too_long(limit, pointer)] if len(value) > limit else []


def _check_text(
    obj: object, limit: int, pointer: str, *, plain_only: bool = False, required: bool = True
) -> list[str]:
    if obj is None:
        return [f"missing required field: text [json-pointer:{pointer}]"] if required else []
    if not isinstance(obj, dict):
        return [_schema(pointer)]
    kind = obj.get("type")
    allowed = {"plain_text"} if plain_only else TEXT_TYPES
    if kind not in allowed:
        return [_schema(pointer)]
    text = obj.get("text")
    if not isinstance(text, str):
        return [_schema(f"{pointer}/text")]
    if not text:
        return [f"must be more than 0 characters [json-pointer:{pointer}/text]"]
    return _check_string(text, limit, f"{pointer}/text")


def _check_block(block: object, pointer: str) -> list[str]:
    if not isinstance(block, dict):
        return [_schema(pointer)]
    kind = block.get("type")
    if kind is None:
        return [f"missing required field: type [json-pointer:{pointer}]"]
    if kind not in BLOCK_TYPES:
        return [f"unsupported type: {kind} [json-pointer:{pointer}/type]"]
    problems = _check_string(block.get("block_id"), BLOCK_ID, f"{pointer}/block_id")
    checker = _BLOCK_CHECKS.get(kind)
    if checker is not None:
        problems.extend(checker(block, pointer))
    return problems


def _section(block: dict[str, Any], pointer: str) -> list[str]:
    text, fields = block.get("text"), block.get("fields")
    if text is None and fields is None:
        return [f"must define either `text` or `fields` [json-pointer:{pointer}/type]"]
    problems = _check_text(text, SECTION_TEXT, f"{pointer}/text", required=False)
    if fields is not None:
        if not isinstance(fields, list):
            problems.append(_schema(f"{pointer}/fields"))
        else:
            if len(fields) > SECTION_FIELDS:
                problems.append(_too_many(SECTION_FIELDS, f"{pointer}/fields"))
            for i, field in enumerate(fields):
                problems.extend(_check_text(field, FIELD_TEXT, f"{pointer}/fields/{i}"))
    accessory = block.get("accessory")
    if accessory is not None:
        problems.extend(_check_element(accessory, f"{pointer}/accessory"))
    return problems


def _header(block: dict[str, Any], pointer: str) -> list[str]:
    return _check_text(block.get("text"), HEADER_TEXT, f"{pointer}/text", plain_only=True)


def _context(block: dict[str, Any], pointer: str) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list):
        return [_schema(f"{pointer}/elements")]
    problems = []
    if len(elements) > CONTEXT_ELEMENTS:
        problems.append(_too_many(CONTEXT_ELEMENTS, f"{pointer}/elements"))
    for i, element in enumerate(elements):
        where = f"{pointer}/elements/{i}"
        if isinstance(element, dict) and element.get("type") == "image":
            continue
        problems.extend(_check_text(element, TEXT_OBJECT, where))
    return problems


def _actions(block: dict[str, Any], pointer: str) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list):
        return [_schema(f"{pointer}/elements")]
    problems = []
    if len(elements) > ACTIONS_ELEMENTS:
        problems.append(_too_many(ACTIONS_ELEMENTS, f"{pointer}/elements"))
    for i, element in enumerate(elements):
        problems.extend(_check_element(element, f"{pointer}/elements/{i}"))
    return problems


def _markdown(block: dict[str, Any], pointer: str) -> list[str]:
    text = block.get("text")
    if not isinstance(text, str):
        return [_schema(f"{pointer}/text")]
    return _check_string(text, MARKDOWN_TEXT, f"{pointer}/text")


def _check_element(element: object, pointer: str) -> list[str]:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        return [_schema(pointer)]
    problems = _check_string(element.get("action_id"), ACTION_ID, f"{pointer}/action_id")
    if element["type"] == "button":
        problems.extend(
            _check_text(element.get("text"), BUTTON_TEXT, f"{pointer}/text", plain_only=True)
        )
        problems.extend(_check_string(element.get("value"), BUTTON_VALUE, f"{pointer}/value"))
        problems.extend(_check_string(element.get("url"), BUTTON_URL, f"{pointer}/url"))
    return problems


_BLOCK_CHECKS = {
    "section": _section,
    "header": _header,
    "context": _context,
    "actions": _actions,
    "markdown": _markdown,
}
