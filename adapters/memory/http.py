"""An in-memory twin of the console check: pages are set by the test, everything else is down."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from adapters.http_check import MAX_BODY_BYTES
from bot.domain.errors import HttpCheckFailed
from bot.domain.ports import HttpResponse


@dataclass(frozen=True, kw_only=True)
class Page:
    body: str
    status: int = 200


class MemoryHttpCheck:
    """Implements `HttpCheck` over a dict of pages. A URL with no page is a host where nothing
    answers (`HttpCheckFailed`), like the real check; bodies are bounded the same way."""

    def __init__(self, pages: dict[str, Page] | None = None) -> None:
        self._pages: dict[str, Page] = dict(pages or {})
        self._lock = threading.Lock()
        self.requests: list[str] = []  # the URLs asked for, in order

    def set_page(self, url: str, body: str, *, status: int = 200) -> None:
        with self._lock:
            self._pages[url] = Page(body=body, status=status)

    def take_down(self, url: str) -> None:
        """Nothing answers at `url` any more."""
        with self._lock:
            self._pages.pop(url, None)

    def get(self, url: str, *, timeout: float) -> HttpResponse:
        with self._lock:
            self.requests.append(url)
            page = self._pages.get(url)
        if page is None:
            raise HttpCheckFailed(
                f"Nothing answered at {url} within {timeout:g}s (ConnectionError). "
                "Check that the console runs and the URL in the config is right.",
                host=url,
            )
        body = page.body.encode()[:MAX_BODY_BYTES].decode("utf-8", "replace")
        return HttpResponse(url=url, status=page.status, body=body, elapsed=0.0)
