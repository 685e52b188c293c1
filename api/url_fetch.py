"""Downloads ``image_url`` without letting callers reach inside the network.

The rules are ``shared.url_policy``'s (http/https only, public addresses only
unless ``api.url_fetch_allow_hosts`` allows more).  The request goes to the
very address that was checked (so a second DNS answer cannot differ),
redirects are followed by hand with each target checked the same way, the body
is capped at ``api.max_upload_bytes`` and the whole download at
``api.url_fetch_timeout_s``.
"""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from shared.errors import PayloadTooLargeError, UrlFetchError
from shared.settings import ApiSettings
from shared.url_policy import Address, check_addresses, parse_target


async def resolve_allowed(url: str, settings: ApiSettings) -> tuple[str, Address]:
    """``(host, address)`` a URL may be fetched from; raises :class:`UrlRefusedError`."""
    target = parse_target(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UrlFetchError(f"the host {target.host!r} cannot be resolved") from exc
    return target.host, check_addresses(target, infos, settings.url_fetch_allow_hosts)


async def fetch_image(url: str, settings: ApiSettings) -> bytes:
    """The body at ``url`` (at most ``max_upload_bytes``), after the checks above."""
    try:
        return await asyncio.wait_for(_fetch(url, settings), timeout=settings.url_fetch_timeout_s)
    except TimeoutError as exc:
        raise UrlFetchError(f"downloading the image took longer than {settings.url_fetch_timeout_s} s") from exc


async def _fetch(url: str, settings: ApiSettings) -> bytes:
    timeout = httpx.Timeout(settings.url_fetch_timeout_s)
    async with httpx.AsyncClient(follow_redirects=False, timeout=timeout, trust_env=False) as client:
        for _ in range(settings.url_fetch_max_redirects + 1):
            host, address = await resolve_allowed(url, settings)
            parts = urlsplit(url)
            netloc = f"[{address}]" if address.version == 6 else str(address)
            if parts.port:
                netloc += f":{parts.port}"
            pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "image/*"}
            request = client.build_request("GET", pinned, headers=headers, extensions={"sni_hostname": host})
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise UrlFetchError(f"the image URL could not be fetched: {type(exc).__name__}") from exc
            try:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise UrlFetchError("the image URL redirected without a location")
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise UrlFetchError(f"the image URL answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes:
                    raise PayloadTooLargeError(f"the image is larger than {settings.max_upload_bytes} bytes")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > settings.max_upload_bytes:
                        raise PayloadTooLargeError(f"the image is larger than {settings.max_upload_bytes} bytes")
                return bytes(body)
            finally:
                await response.aclose()
    raise UrlFetchError(f"the image URL redirected more than {settings.url_fetch_max_redirects} times")
