"""Block Kit pieces that keep Slack's limits whatever the data, and say so when they cut.

Every builder here takes raw (untrusted) text, escapes it for mrkdwn and fits it to the limit of
the field it goes into. Cuts are visible ("[… truncated]", "… 37 more steps"): an operator must
never read a shortened list as a complete one. Limits are from Slack's Block Kit reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from commands.views import count

Block = dict[str, Any]

MESSAGE_BLOCKS = 50
HOME_BLOCKS = 100
SECTION_TEXT = 3000
HEADER_TEXT = 150
FIELD_TEXT = 2000
SECTION_FIELDS = 10
CONTEXT_ELEMENTS = 10
CONTEXT_TEXT = 3000
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
MESSAGE_TEXT = 40000
# Slack refuses messages whose blocks hold about 13,000 characters in all (`msg_blocks_too_long`,
# undocumented: slackapi/bolt-js#2509), so a message keeps below that. The home tab has no such
# report; its budget only keeps it readable.
MESSAGE_CHARS = 12_000
HOME_CHARS = 30_000
FALLBACK_TEXT = 300  # notification text: one glance, far below MESSAGE_TEXT
LINE_CHARS = 300  # one output line; a longer one is cut, so one line cannot hide the rest
INLINE_CHARS = 200  # an id, a command preview or a value in inline code

TRUNCATED = " [… truncated]"
_ENTITY_START = re.compile(r"&[a-z]{0,4}$")
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_KEPT_MENTION = re.compile(r"&lt;@([A-Za-z0-9][A-Za-z0-9._-]{0,79})&gt;")
_FENCE = re.compile(r"`{3,}")


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: untrusted `<!channel>` must not become a real ping or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_keeping_mentions(text: str) -> str:
    """Escape, but let well-formed `<@U123>` mentions through: sentences the bot wrote use them."""
    return _KEPT_MENTION.sub(r"<@\1>", escape(text))


def clip(text: str, limit: int) -> str:
    """Cut raw text to `limit` characters with a visible mark."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(TRUNCATED))] + TRUNCATED


def fit(text: str, limit: int) -> str:
    """Cut already escaped mrkdwn to `limit`, never inside an entity, a `<…>` token or a fence."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(TRUNCATED) - 4)]
    opened = cut.rfind("<")
    if opened > cut.rfind(">"):
        cut = cut[:opened]  # a half mention or date would show as garbage or fail to parse
    entity = _ENTITY_START.search(cut)
    if entity:
        cut = cut[: entity.start()]
    closing = "\n```" if cut.count("```") % 2 else ""
    return cut + closing + TRUNCATED


def one_line(text: str) -> str:
    """Collapse whitespace: headers and list lines must not be broken up by untrusted newlines."""
    return " ".join(text.split())


def short(text: str, limit: int) -> str:
    """Raw text on one line, cut visibly to `limit` characters."""
    window = text[: 4 * limit]  # so a megabyte of text costs no more than a line
    shown = one_line(window)
    if len(shown) > limit or len(window) < len(text):
        return shown[: max(0, limit - len(TRUNCATED))] + TRUNCATED
    return shown


def phrase(text: str, limit: int = INLINE_CHARS) -> str:
    """Untrusted text for one line of mrkdwn: on one line, cut visibly, escaped."""
    return escape(neutralise_fences(short(text, limit)))


def passage(text: str, limit: int = 1500) -> str:
    """Untrusted text that may span lines (an error sentence), cut visibly and escaped."""
    return escape(neutralise_fences(clip(text, limit)))


def inline_code(text: str, limit: int = INLINE_CHARS) -> str:
    # A backtick would end the code span early; a look-alike keeps the text readable.
    shown = short(text, limit).replace("`", "ˋ") or " "
    return f"`{escape(shown)}`"


def mention(user: str) -> str:
    """`<@user>` for a plausible Slack id; anything else is shown as escaped text, not parsed."""
    if _USER_ID.fullmatch(user):
        return f"<@{user}>"
    return phrase(user, 80) or "(nobody)"


def mentions(users: Iterable[str], limit: int = 20) -> str:
    chosen = list(users)
    if not chosen:
        return "nobody"
    shown = ", ".join(mention(u) for u in chosen[:limit])
    more = len(chosen) - limit
    return f"{shown} and {more} more" if more > 0 else shown


def slack_date(moment: datetime) -> str:
    """A date each reader sees in their own time zone, with a UTC fallback for old clients."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # records are written in UTC
    utc = moment.astimezone(UTC)
    epoch = int(utc.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} {{time}}|{utc:%Y-%m-%d %H:%M} UTC>"


# -- blocks -------------------------------------------------------------------------------------


def header(text: str) -> Block:
    shown = short(text, HEADER_TEXT) or "—"
    return {"type": "header", "text": {"type": "plain_text", "text": shown, "emoji": True}}


def section(text: str) -> Block:
    """A section of escaped mrkdwn (callers escape what they interpolate)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text, SECTION_TEXT) or " "}}


def fields(pairs: Sequence[tuple[str, str]]) -> Block:
    """Label/value pairs side by side; values are escaped mrkdwn, labels our own words."""
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": fit(f"*{label}*\n{value or '—'}", FIELD_TEXT)}
            for label, value in pairs[:SECTION_FIELDS]
        ],
    }


def context(*texts: str) -> Block:
    return {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": fit(text, CONTEXT_TEXT) or " "}
            for text in texts[:CONTEXT_ELEMENTS]
        ],
    }


def divider() -> Block:
    return {"type": "divider"}


def button(
    text: str, action_id: str, value: str, *, style: str | None = None, confirm: Block | None = None
) -> Block:
    element: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": short(text, BUTTON_TEXT), "emoji": True},
        "action_id": action_id,
        # A cut value no longer matches its plan, so a vote with it is refused, never misapplied.
        "value": value[:BUTTON_VALUE],
    }
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def confirm_dialog(title: str, text: str, yes: str, no: str = "Cancel") -> Block:
    # Slack's confirmation object: title 100, text 300, buttons 30 characters.
    return {
        "title": {"type": "plain_text", "text": short(title, 100)},
        "text": {"type": "plain_text", "text": clip(text, 300)},
        "confirm": {"type": "plain_text", "text": clip(yes, 30)},
        "deny": {"type": "plain_text", "text": clip(no, 30)},
    }


@dataclass(frozen=True, kw_only=True)
class Excerpt:
    """A code block of output lines and how many of the lines given it shows."""

    text: str
    shown: int


def neutralise_fences(line: str) -> str:
    # Zero-width spaces between the backticks: they read the same but cannot close our block.
    return _FENCE.sub(lambda m: "\u200b".join(m.group()), line)


def code_block(
    lines: Sequence[str], *, limit: int = SECTION_TEXT - 200, from_end: bool = True
) -> Excerpt:
    """The lines that fit in `limit` characters, each cut to LINE_CHARS, in a code block.

    Output is read from its end (the last lines say how it ended); `from_end=False` keeps the
    first lines instead.
    """
    kept: list[str] = []
    used = len("```\n\n```")
    for line in reversed(lines) if from_end else lines:
        shown = escape(neutralise_fences(clip(line, LINE_CHARS)))
        if used + len(shown) + 1 > limit:
            break
        kept.append(shown)
        used += len(shown) + 1
    if not kept:
        return Excerpt(
            text="_(no output)_" if not lines else "_(the output does not fit)_", shown=0
        )
    body = "\n".join(reversed(kept) if from_end else kept)
    return Excerpt(text=f"```\n{body}\n```", shown=len(kept))


def line_sections(
    lines: Sequence[str], *, budget: int, noun: str, title: str = "", total: int | None = None
) -> list[Block]:
    """Escaped mrkdwn lines packed into sections, up to `budget` characters in all.

    What does not fit is counted ("… 37 more steps"), never dropped silently. `total` is how many
    items the lines stand for when the caller already left some out.
    """
    total = len(lines) if total is None else total
    room = SECTION_TEXT - 100  # space for the "… N more" line
    blocks: list[Block] = []
    chunk: list[str] = [title] if title else []
    size = used = len(title)
    shown = 0
    for line in lines:
        # the first line is cut to fit rather than left out: one line of something beats none
        line = fit(line, room if shown else max(100, min(room, budget - used - 1)))
        if used + len(line) + 1 > budget:
            break
        if chunk and size + len(line) + 1 > room:
            blocks.append(section("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
        used += len(line) + 1
        shown += 1
    if total > shown:
        chunk.append(f"_… {count(total - shown, 'more ' + noun)}_")
    if chunk:
        blocks.append(section("\n".join(chunk)))
    return blocks


def text_size(node: object) -> int:
    """Characters of text in a block (or list of blocks): what Slack's total limit counts."""
    if isinstance(node, dict):
        own = len(node["text"]) if isinstance(node.get("text"), str) else 0
        return own + sum(text_size(value) for value in node.values())
    if isinstance(node, list):
        return sum(text_size(item) for item in node)
    return 0


def cap_blocks(blocks: list[Block], *, max_blocks: int, max_chars: int) -> list[Block]:
    """The last safety net: at most `max_blocks` and `max_chars`, with a visible note when cut.

    A closing context block (the plan digest, the update time) is kept whatever is cut before it.
    """
    if len(blocks) <= max_blocks and text_size(blocks) <= max_chars:
        return blocks
    footer = blocks[-1:] if blocks and blocks[-1]["type"] == "context" else []
    body = blocks[: len(blocks) - len(footer)]
    room_blocks = max_blocks - len(footer) - 1  # one for the note
    room_chars = max_chars - text_size(footer) - 200
    kept: list[Block] = []
    used = 0
    for block in body:
        size = text_size(block)
        if len(kept) >= room_blocks or used + size > room_chars:
            break
        kept.append(block)
        used += size
    left = len(body) - len(kept)
    note = context(f"_… {count(left, 'more part')} not shown: the message would be too long._")
    return [*kept, note, *footer]
