"""Slack's Web API rate limits as token buckets, plus a switch to force the next calls to fail.

Tiers from https://docs.slack.dev/apis/web-api/rate-limits ("per API method per workspace per app"):
Tier 1 1+ per minute, Tier 2 20+, Tier 3 50+ ("sporadic bursts are welcome"), Tier 4 100+ ("generous
burst behavior"); posting messages "1 per second" per channel, "short bursts >1 allowed". The
documented numbers are floors, so each tier here allows exactly its number per minute and a burst of
the same size; how long a posting burst may be is not documented, `POSTING.burst` is our choice.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Rule:
    """A token bucket: `burst` calls at once, refilled at `per_minute`, per channel if asked."""

    per_minute: float
    burst: int
    per_channel: bool = False


TIER_1 = Rule(per_minute=1, burst=1)
TIER_2 = Rule(per_minute=20, burst=20)
TIER_3 = Rule(per_minute=50, burst=50)
TIER_4 = Rule(per_minute=100, burst=100)
# "chat.postMessage generally allows posting one message per second per channel" (rate limits page).
POSTING = Rule(per_minute=60, burst=5, per_channel=True)

# The tier printed on each method's reference page. chat.update is held to the posting rule on
# purpose: the bot edits one progress message in place and must throttle itself like a poster.
DEFAULT_RULES: Mapping[str, Rule] = {
    "auth.test": TIER_4,  # "Special" on its page; Tier 4 is the closest documented bound.
    "chat.postMessage": POSTING,
    "chat.update": POSTING,
    "chat.postEphemeral": TIER_4,
    "chat.delete": TIER_3,
    "reactions.add": TIER_3,
    "reactions.remove": TIER_2,
    "users.info": TIER_4,
    "usergroups.users.list": TIER_2,
    "views.publish": TIER_4,
    "conversations.info": TIER_3,
    "files.getUploadURLExternal": TIER_4,
    "files.completeUploadExternal": TIER_4,
}


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Decides whether a call is rate limited and for how many seconds (`Retry-After`)."""

    def __init__(
        self,
        rules: Mapping[str, Rule] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules: dict[str, Rule] = dict(DEFAULT_RULES if rules is None else rules)
        self.enabled = True
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._forced: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def force(self, method: str, times: int = 1, *, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429, whatever the buckets say."""
        with self._lock:
            self._forced.setdefault(method, []).extend([retry_after] * times)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._forced.clear()

    def check(self, method: str, channel: str | None = None) -> int | None:
        """Seconds to wait if this call is limited (and then it is not counted), else None."""
        with self._lock:
            forced = self._forced.get(method)
            if forced:
                return forced.pop(0)
            rule = self.rules.get(method)
            if not self.enabled or rule is None:
                return None
            key = (method, (channel or "") if rule.per_channel else "")
            now = self._clock()
            bucket = self._buckets.setdefault(key, _Bucket(tokens=rule.burst, updated=now))
            rate = rule.per_minute / 60.0
            bucket.tokens = min(rule.burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            return max(1, math.ceil((1 - bucket.tokens) / rate))
