"""The safe fetcher: every URL that a feed hands us goes through here.

Feeds are hostile input, so a fetch has timeouts (connect, per read, and a deadline for the whole
body), a size cap enforced while streaming (not trusted from ``Content-Length``), content sniffing
(magic bytes, not the extension nor the header alone), a bounded number of redirects followed by hand,
and an address guard: the connection itself resolves the host name and refuses loopback, private,
link-local and any other non-global address, at every hop and for every DNS answer, and connects to
the address it checked (so DNS rebinding between check and connect gains nothing). An explicit
allow-list (``MISINFO_FETCH_ALLOW``: CIDRs or ``IP:port``) opens chosen private destinations.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util import connection as u3connection

from ingest.exceptions import BadInput, IngestError

log = logging.getLogger(__name__)

REDIRECT_STATUSES = {301, 302, 303, 307, 308}
TRANSIENT_STATUSES = {429, 500, 502, 503, 504}


class FetchError(BadInput):
    """A URL that cannot give an acceptable body: refused, too big, not an image, HTTP 4xx..."""

    def __init__(self, reason: str) -> None:
        super().__init__("fetch", reason)


class AddressRefused(FetchError):
    """The destination resolves only to addresses the guard refuses (SSRF protection)."""


class TransientFetchError(IngestError):
    """Worth retrying later: HTTP 429 / 5xx, a timeout, a refused connection. ``retry_after`` is the
    server's ``Retry-After`` (or rate-limit reset) in seconds, when it said one."""

    def __init__(self, reason: str, retry_after: float | None = None, status: int | None = None) -> None:
        self.reason = reason
        self.retry_after = retry_after
        self.status = status
        super().__init__(reason)


# --- the address guard ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllowRule:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None

    def matches(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        return ip.version == self.network.version and ip in self.network and self.port in (None, port)


def parse_allow(text: str | Iterable[str]) -> tuple[AllowRule, ...]:
    """``"127.0.0.0/8, 10.1.2.3:8080, [::1]:9000, fd00::/8"`` -> rules. An entry with a port allows that
    port only (the tests allow their own server, and nothing else on loopback)."""
    entries = [e.strip() for e in (text.split(",") if isinstance(text, str) else text)]
    rules = []
    for entry in filter(None, entries):
        port: int | None = None
        host = entry
        if entry.startswith("["):  # [v6]:port or [v6/len]:port
            host, _, rest = entry[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else None
        elif entry.count(":") == 1:  # v4:port or v4/len:port
            host, _, p = entry.partition(":")
            port = int(p)
        try:
            rules.append(AllowRule(ipaddress.ip_network(host, strict=False), port))
        except ValueError as exc:
            raise ValueError(f"fetch allow-list entry {entry!r}: {exc}") from None
    return tuple(rules)


def address_category(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` must not be reached, or None for a public address."""
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    for attr, name in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_unspecified", "unspecified"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attr):
            return name
    return None if ip.is_global else "not globally routable"


@dataclass(frozen=True)
class AddressGuard:
    allow: tuple[AllowRule, ...] = ()

    def permitted(self, host: str, port: int) -> list[tuple[int, str]]:
        """Resolve ``host`` and return the (family, address) pairs we may connect to; raise
        :class:`AddressRefused` when there are none."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError(f"cannot resolve host {host!r}: {exc}") from None
        ok: list[tuple[int, str]] = []
        refused: list[str] = []
        for family, _, _, _, sockaddr in infos:
            addr = str(sockaddr[0]).split("%", 1)[0]
            ip = ipaddress.ip_address(addr)
            why = address_category(ip)
            if why is None or any(rule.matches(ip, port) for rule in self.allow):
                if (family, addr) not in ok:
                    ok.append((family, addr))
            else:
                refused.append(f"{addr} is a {why} address")
        if not ok:
            raise AddressRefused(
                f"refused to connect to {host}:{port}: {'; '.join(dict.fromkeys(refused))} "
                "(not on the fetch allow-list)"
            )
        return ok


class _GuardedConnectionMixin:
    """Resolve, check and connect to the checked address: the only place a socket is opened."""

    guard: AddressGuard

    def _new_conn(self) -> socket.socket:
        host, port = self._dns_host, self.port  # type: ignore[attr-defined]
        last: OSError | None = None
        for _family, addr in self.guard.permitted(host, port):
            try:
                return u3connection.create_connection(
                    (addr, port),
                    self.timeout,  # type: ignore[attr-defined]
                    source_address=self.source_address,  # type: ignore[attr-defined]
                    socket_options=self.socket_options,  # type: ignore[attr-defined]
                )
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"connection to {host}:{port} timed out") from exc
            except OSError as exc:
                last = exc
        raise NewConnectionError(self, f"failed to connect to {host}:{port}: {last}")  # type: ignore[arg-type]


def _guarded_pool_manager(guard: AddressGuard, user_agent: str) -> urllib3.PoolManager:
    http_conn = type("GuardedHTTPConnection", (_GuardedConnectionMixin, HTTPConnection), {"guard": guard})
    https_conn = type("GuardedHTTPSConnection", (_GuardedConnectionMixin, HTTPSConnection), {"guard": guard})
    http_pool = type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
    https_pool = type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})
    pm = urllib3.PoolManager(num_pools=32, maxsize=4, headers={"User-Agent": user_agent})
    pm.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}  # type: ignore[assignment]
    return pm


# --- content sniffing ----------------------------------------------------------------------------------

_IMAGE_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
    (b"BM", 0, "image/bmp"),
)


def sniff_image(head: bytes) -> str | None:
    """The image MIME type that the first bytes announce, or None."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for magic, offset, mime in _IMAGE_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return mime
    return None


def describe_content(head: bytes) -> str:
    """What a non-image body looks like, for the dead letter's reason."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in text[:1024] or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG (vector images are not accepted)"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text[:512]:
        return "HTML"
    if text.startswith(b"<?xml") or text.startswith(b"<"):
        return "XML/markup"
    if text.startswith((b"{", b"[")):
        return "JSON"
    if text.startswith(b"%pdf"):
        return "PDF"
    return "not a recognised image format"


# --- the fetcher ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchConfig:
    max_bytes: int = 20 * 1024 * 1024
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    total_timeout_s: float = 60.0
    max_redirects: int = 5
    allow: tuple[AllowRule, ...] = ()
    user_agent: str = "misinfo-watch/0.1 (image collector)"

    @classmethod
    def from_settings(cls, settings: Any) -> FetchConfig:
        return cls(
            max_bytes=settings.max_download_bytes,
            connect_timeout_s=settings.fetch_connect_timeout_s,
            read_timeout_s=settings.fetch_read_timeout_s,
            total_timeout_s=settings.fetch_total_timeout_s,
            max_redirects=settings.fetch_max_redirects,
            allow=parse_allow(settings.fetch_allow),
        )


@dataclass
class Response:
    url: str  # after redirects
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    mime: str | None = None  # sniffed, for images
    redirects: list[str] = field(default_factory=list)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise TransientFetchError(
                f"{self.url}: response is not JSON ({exc})", status=self.status
            ) from None


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta or HTTP date) or a rate-limit reset epoch."""
    now = time.time() if now is None else now
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    for name in ("x-rate-limit-reset", "x-ratelimit-reset"):
        reset = headers.get(name)
        if reset and reset.strip().isdigit():
            return max(0.0, float(reset) - now)
    return None


class Fetcher:
    """``get`` / ``image`` / ``json`` over the guarded pool. One per collector; thread-safe for reads."""

    def __init__(self, config: FetchConfig) -> None:
        self.config = config
        self.guard = AddressGuard(config.allow)
        self._pool = _guarded_pool_manager(self.guard, config.user_agent)

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        image: bool = False,
        max_bytes: int | None = None,
    ) -> Response:
        """GET ``url`` following at most ``max_redirects`` redirects, every hop through the guard.

        Returns the final response whatever its status (the caller reads API errors); raises
        :class:`TransientFetchError` for 429/5xx, timeouts and connection failures, :class:`FetchError`
        for everything permanent. With ``image=True`` the body must sniff as an image and non-2xx is
        an error."""
        if params:
            url = url + ("&" if urlsplit(url).query else "?") + urlencode(params, doseq=True)
        cap = self.config.max_bytes if max_bytes is None else max_bytes
        deadline = time.monotonic() + self.config.total_timeout_s
        redirects: list[str] = []
        current = url
        while True:
            scheme = urlsplit(current).scheme.lower()
            if scheme not in ("http", "https"):
                raise FetchError(f"refused URL scheme {scheme or 'none'!r} in {current[:200]}")
            resp = self._open(current, headers, deadline)
            try:
                if resp.status in REDIRECT_STATUSES and resp.headers.get("location"):
                    if len(redirects) >= self.config.max_redirects:
                        raise FetchError(
                            f"too many redirects (more than {self.config.max_redirects}) from {url}"
                        )
                    redirects.append(current)
                    current = urljoin(current, resp.headers["location"])
                    continue
                hdrs = {k.lower(): v for k, v in resp.headers.items()}
                if resp.status in TRANSIENT_STATUSES:
                    raise TransientFetchError(
                        f"HTTP {resp.status} from {current}", retry_after_s(hdrs), status=resp.status
                    )
                if image and not 200 <= resp.status < 300:
                    raise FetchError(f"HTTP {resp.status} from {current}")
                body, mime = self._read(resp, current, hdrs, cap, deadline, image)
                return Response(current, resp.status, hdrs, body, mime, redirects)
            finally:
                resp.release_conn()

    def image(self, url: str, headers: Mapping[str, str] | None = None) -> Response:
        return self.get(url, headers=headers, image=True)

    def _open(self, url: str, headers: Mapping[str, str] | None, deadline: float) -> Any:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransientFetchError(f"timed out after {self.config.total_timeout_s:g}s fetching {url}")
        timeout = urllib3.Timeout(
            connect=min(self.config.connect_timeout_s, left), read=min(self.config.read_timeout_s, left)
        )
        try:
            return self._pool.request(
                "GET",
                url,
                headers=dict(headers or {}),
                redirect=False,
                retries=False,
                preload_content=False,
                timeout=timeout,
            )
        except (ConnectTimeoutError, ReadTimeoutError) as exc:
            raise TransientFetchError(f"timed out connecting to or waiting for {url}: {exc}") from None
        except urllib3.exceptions.LocationParseError as exc:
            raise FetchError(f"malformed URL {url[:200]!r}: {exc}") from None
        except HTTPError as exc:
            cause = exc.__context__ if isinstance(exc.__context__, BadInput) else None
            if cause is not None:  # the guard's refusal, wrapped by urllib3
                raise cause from None
            raise TransientFetchError(f"connection to {url} failed: {exc}") from None

    def _read(
        self, resp: Any, url: str, headers: dict[str, str], cap: int, deadline: float, image: bool
    ) -> tuple[bytes, str | None]:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(f"body of {int(declared)} bytes (Content-Length) exceeds the {cap}-byte cap")
        served_as = headers.get("content-type", "unknown type").split(";")[0].strip()
        chunks: list[bytes] = []
        size = 0
        mime: str | None = None
        try:
            for chunk in resp.stream(64 * 1024):
                size += len(chunk)
                if size > cap:
                    raise FetchError(f"body exceeds the {cap}-byte cap (stopped reading at {size} bytes)")
                chunks.append(chunk)
                if image and mime is None and size >= 16:
                    mime = self._sniff(b"".join(chunks), served_as)
                if time.monotonic() > deadline:
                    raise TransientFetchError(
                        f"timed out after {self.config.total_timeout_s:g}s reading {url} ({size} bytes so far)"
                    )
        except ReadTimeoutError:
            raise TransientFetchError(
                f"server stalled: no data for {self.config.read_timeout_s:g}s reading {url} ({size} bytes so far)"
            ) from None
        except ProtocolError as exc:
            raise TransientFetchError(f"connection broken reading {url}: {exc}") from None
        body = b"".join(chunks)
        if image:
            if not body:
                raise FetchError(f"empty body (0 bytes) from {url}")
            mime = mime or self._sniff(body, served_as)
        return body, mime

    @staticmethod
    def _sniff(head: bytes, served_as: str) -> str:
        mime = sniff_image(head)
        if mime is None:
            raise FetchError(f"content is {describe_content(head)}, not an image (served as {served_as})")
        return mime
