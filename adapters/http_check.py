"""Reading a console page with requests, for verification: bounded in size and in time."""

from __future__ import annotations

import time

import requests

from bot.domain.errors import HttpCheckFailed
from bot.domain.ports import HttpResponse

MAX_BODY_BYTES = 64 * 1024
_CHUNK = 8192


class RequestsHttpCheck:
    """Implements `HttpCheck`. Reads at most `max_bytes` of the body (a console page that streams
    forever cannot hold a step), and gives up after `timeout` seconds in total."""

    def __init__(
        self, *, session: requests.Session | None = None, max_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self._session = session or requests.Session()
        self._max_bytes = max_bytes

    def get(self, url: str, *, timeout: float) -> HttpResponse:
        started = time.monotonic()
        deadline = started + timeout
        try:
            with self._session.get(url, timeout=timeout, stream=True) as response:
                body = bytearray()
                for chunk in response.iter_content(_CHUNK):
                    body += chunk
                    if len(body) >= self._max_bytes:
                        break
                    # requests' timeout counts per read; a page that trickles must still stop.
                    if time.monotonic() > deadline:
                        raise HttpCheckFailed(
                            f"{url} was still sending its page after {timeout:g}s. "
                            "Check the console's health, or raise the check's timeout.",
                            host=url,
                        )
                encoding = response.encoding if "charset" in _content_type(response) else None
                return HttpResponse(
                    url=response.url,
                    status=response.status_code,
                    body=bytes(body[: self._max_bytes]).decode(encoding or "utf-8", "replace"),
                    elapsed=time.monotonic() - started,
                )
        except requests.RequestException as exc:
            raise HttpCheckFailed(
                f"Nothing answered at {url} within {timeout:g}s ({type(exc).__name__}). "
                "Check that the console runs and the URL in the config is right.",
                host=url,
            ) from exc


def _content_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").lower()
