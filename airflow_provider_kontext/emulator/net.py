"""Outbound HTTP of the emulator: callback POSTs and fetching foreign URLs (aiohttp).

Async so that thousands of pending callbacks or slow input URLs never tie up threads or block
the event loop that answers polls. One session is shared for connection reuse and closed on
shutdown.
"""

from __future__ import annotations

import aiohttp

__all__ = ["FetchError", "Outbound"]

_USER_AGENT = "kontext-emulator/1 (+https://docs.kie.ai)"


class FetchError(Exception):
    """A URL could not be fetched (network error, timeout, non-2xx status or too large)."""


class Outbound:
    """Lazily created shared ``aiohttp.ClientSession`` bound to the server's event loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": _USER_AGENT})
        return self._session

    async def close(self) -> None:
        """Close the session (lifespan shutdown)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def fetch(self, url: str, *, timeout: float, max_bytes: int = 100 * 1024 * 1024) -> bytes:
        """GET ``url`` and return the body, or raise ``FetchError``."""
        try:
            async with self._get_session().get(
                url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=True
            ) as response:
                if response.status // 100 != 2:
                    raise FetchError(f"GET {url} answered HTTP {response.status}")
                data = await response.content.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise FetchError(f"GET {url} is larger than {max_bytes} bytes")
                return data
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise FetchError(f"GET {url} failed: {exc!r}") from exc

    async def post_json(self, url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> int:
        """POST JSON ``body`` and return the HTTP status, or raise ``FetchError``."""
        try:
            async with self._get_session().post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                await response.read()
                return response.status
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise FetchError(f"POST {url} failed: {exc!r}") from exc
