"""The tags of a repository, read over the Registry HTTP API v2 with requests.

Handles the three ways registries let us in: no auth (a local mirror), HTTP basic auth, and the
Bearer token challenge of hosted registries (`WWW-Authenticate: Bearer realm=...`). Follows
pagination (`n` and the `Link` header). Credentials and tokens never appear in messages or logs.
"""

from __future__ import annotations

import logging
import re
from typing import Any, NoReturn
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from bot.domain.errors import RegistryUnavailable
from bot.domain.inventory import Registry

log = logging.getLogger(__name__)

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_MAX_PAGES = 1000  # a registry that keeps sending `next` links is broken, not infinite


class RegistryHttp:
    """Implements `ImageRegistry` against any registry that speaks the v2 HTTP API."""

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        page_size: int = 100,
    ) -> None:
        self._session = session or requests.Session()
        self._timeout = timeout
        self._page_size = page_size

    def tags(self, registry: Registry, repository: str) -> list[str]:
        base = registry.url.rstrip("/") + "/"
        where = _safe_url(registry.url)
        repository = repository.strip("/")
        url: str | None = urljoin(base, f"v2/{repository}/tags/list?n={self._page_size}")
        bearer: str | None = None
        seen: set[str] = set()
        tags: list[str] = []
        while url and len(seen) < _MAX_PAGES:
            seen.add(url)
            response = self._get(url, registry, bearer)
            if response.status_code == 401 and bearer is None:
                bearer = self._token(response, registry, repository)
                response = self._get(url, registry, bearer)
            if response.status_code == 404:
                # The registry answers but has no such repository (NAME_UNKNOWN).
                return []
            if response.status_code != 200:
                _unavailable(where, f"answered HTTP {response.status_code}{_errors(response)}")
            tags.extend(_page_tags(response, where))
            link = response.links.get("next", {}).get("url")
            url = urljoin(base, link) if link else None
            if url in seen:
                url = None
        return tags

    def _get(self, url: str, registry: Registry, bearer: str | None) -> requests.Response:
        headers = {"Accept": "application/json"}
        auth: tuple[str, str] | None = None
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        elif registry.username is not None:
            auth = (registry.username, registry.password or "")
        try:
            return self._session.get(url, headers=headers, auth=auth, timeout=self._timeout)
        except requests.RequestException as exc:
            _unavailable(
                _safe_url(registry.url),
                f"could not be reached ({type(exc).__name__})",
                exc,
            )

    def _token(self, challenge: requests.Response, registry: Registry, repository: str) -> str:
        """Answer a Bearer challenge: ask its realm for a pull token for this repository."""
        where = _safe_url(registry.url)
        header = challenge.headers.get("WWW-Authenticate", "")
        scheme, _, rest = header.partition(" ")
        if scheme.lower() != "bearer":
            # Basic auth was refused, or none was configured: no token can help.
            if registry.username is None:
                _unavailable(where, "asks for credentials (HTTP 401): set username and password")
            _unavailable(where, "refused our credentials (HTTP 401)")
        params = dict(_CHALLENGE_PARAM.findall(rest))
        realm = params.pop("realm", "")
        if not realm:
            _unavailable(where, "sent a Bearer challenge without a realm")
        params.setdefault("scope", f"repository:{repository}:pull")
        auth = (registry.username, registry.password or "") if registry.username else None
        try:
            response = self._session.get(realm, params=params, auth=auth, timeout=self._timeout)
        except requests.RequestException as exc:
            _unavailable(where, f"has a token service {_safe_url(realm)} that does not answer", exc)
        if response.status_code != 200:
            _unavailable(
                where, f"token service {_safe_url(realm)} answered HTTP {response.status_code}"
            )
        body = _json(response, where)
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            _unavailable(where, f"token service {_safe_url(realm)} sent no token")
        log.debug("got a pull token for %s from %s", repository, _safe_url(realm))
        return token


def _page_tags(response: requests.Response, where: str) -> list[str]:
    tags = _json(response, where).get("tags") or []  # a repository without tags sends null
    if not isinstance(tags, list):
        _unavailable(where, "sent a tag list that is not a list")
    return [str(t) for t in tags]


def _json(response: requests.Response, where: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        _unavailable(where, "answered with something that is not JSON", exc)
    if not isinstance(body, dict):
        _unavailable(where, "answered with JSON that is not an object")
    return body


def _errors(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        codes = ", ".join(str(e.get("code")) for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError):
        return ""
    return f" ({codes})" if codes else ""


def _safe_url(url: str) -> str:
    """The URL without user info or query: what may be shown and logged."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _unavailable(where: str, problem: str, exc: BaseException | None = None) -> NoReturn:
    raise RegistryUnavailable(
        f"The registry {where} {problem}. "
        "Check the URL and credentials in the config and that the registry is reachable "
        "from the bot.",
        host=where,
    ) from exc
