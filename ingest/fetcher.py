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
import threading
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


# One row of the IANA special-purpose address registries: the block, its name there, and the
# registry's "Globally Reachable" column (True / False; "N/A" is written False: refused).
@dataclass(frozen=True)
class SpecialBlock:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    name: str
    reachable: bool


def _blocks(*rows: tuple[str, str, bool]) -> tuple[SpecialBlock, ...]:
    blocks = [SpecialBlock(ipaddress.ip_network(net), name, ok) for net, name, ok in rows]
    # The most specific block decides (192.0.0.9/32 is reachable inside the unreachable 192.0.0.0/24).
    return tuple(sorted(blocks, key=lambda b: -b.network.prefixlen))


# IANA IPv4 Special-Purpose Address Registry (RFC 6890, as updated to 2025), all rows.
IPV4_SPECIAL = _blocks(
    ("0.0.0.0/8", '"this network"', False),
    ("0.0.0.0/32", '"this host on this network"', False),
    ("10.0.0.0/8", "private-use", False),
    ("100.64.0.0/10", "shared address space (CGNAT)", False),
    ("127.0.0.0/8", "loopback", False),
    ("169.254.0.0/16", "link-local", False),
    ("172.16.0.0/12", "private-use", False),
    ("192.0.0.0/24", "IETF protocol assignments", False),
    ("192.0.0.0/29", "IPv4 service continuity prefix", False),
    ("192.0.0.8/32", "IPv4 dummy address", False),
    ("192.0.0.9/32", "Port Control Protocol anycast", True),
    ("192.0.0.10/32", "TURN anycast", True),
    ("192.0.0.170/32", "NAT64/DNS64 discovery", False),
    ("192.0.0.171/32", "NAT64/DNS64 discovery", False),
    ("192.0.2.0/24", "documentation (TEST-NET-1)", False),
    ("192.31.196.0/24", "AS112-v4", True),
    ("192.52.193.0/24", "AMT", True),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast", False),  # N/A
    ("192.88.99.2/32", "6a44 relay anycast", False),  # N/A
    ("192.168.0.0/16", "private-use", False),
    ("192.175.48.0/24", "AS112 direct delegation", True),
    ("198.18.0.0/15", "benchmarking", False),
    ("198.51.100.0/24", "documentation (TEST-NET-2)", False),
    ("203.0.113.0/24", "documentation (TEST-NET-3)", False),
    ("240.0.0.0/4", "reserved", False),
    ("255.255.255.255/32", "limited broadcast", False),
    # Not in the registry, and no destination for a fetch either.
    ("224.0.0.0/4", "multicast", False),
)

# IANA IPv6 Special-Purpose Address Registry (RFC 6890 / 8190, as updated to 2025), all rows. The
# forms that carry an IPv4 address (IPv4-mapped, NAT64 64:ff9b::/96, 6to4, Teredo) are judged by
# that address before this table is read (see :func:`embedded_ipv4`).
IPV6_SPECIAL = _blocks(
    ("::1/128", "loopback", False),
    ("::/128", "unspecified", False),
    ("::ffff:0:0/96", "IPv4-mapped", False),
    ("64:ff9b::/96", "IPv4-IPv6 translation (NAT64)", True),
    ("64:ff9b:1::/48", "local-use IPv4-IPv6 translation", False),
    ("100::/64", "discard-only", False),
    ("100:0:0:1::/64", "dummy IPv6 prefix", False),
    ("2001::/23", "IETF protocol assignments", False),
    ("2001::/32", "Teredo", False),  # N/A
    ("2001:1::1/128", "Port Control Protocol anycast", True),
    ("2001:1::2/128", "TURN anycast", True),
    ("2001:1::3/128", "DNS-SD service registration anycast", True),
    ("2001:2::/48", "benchmarking", False),
    ("2001:3::/32", "AMT", True),
    ("2001:4:112::/48", "AS112-v6", True),
    ("2001:10::/28", "deprecated ORCHID", False),  # N/A
    ("2001:20::/28", "ORCHIDv2", True),
    ("2001:30::/28", "drone remote ID entity tags", True),
    ("2001:db8::/32", "documentation", False),
    ("2002::/16", "6to4", False),  # N/A
    ("2620:4f:8000::/48", "AS112 direct delegation", True),
    ("3fff::/20", "documentation", False),
    ("5f00::/16", "segment routing (SRv6) SIDs", False),
    ("fc00::/7", "unique-local", False),
    ("fe80::/10", "link-local", False),
    # Not in the registry: deprecated site-local (RFC 3879, still routed inside some sites) and multicast.
    ("fec0::/10", "site-local (deprecated)", False),
    ("ff00::/8", "multicast", False),
)
GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")  # the rest of the IPv6 space is reserved by the IETF

_V4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291); ::/128 and ::1 are their own rows
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, by form; bit arithmetic, so every Python agrees."""
    n = int(ip)
    low32 = ipaddress.IPv4Address(n & 0xFFFFFFFF)
    if ip in _V4_MAPPED:
        return [("IPv4-mapped", low32)]
    if ip in _V4_COMPATIBLE and n > 1:
        return [("IPv4-compatible", low32)]
    if ip in _NAT64:
        return [("NAT64", low32)]
    if ip in _SIX_TO_FOUR:
        return [("6to4", ipaddress.IPv4Address((n >> 80) & 0xFFFFFFFF))]
    if ip in _TEREDO:  # server in bits 32-63, client (obfuscated: inverted) in the low 32 bits
        server = ipaddress.IPv4Address((n >> 64) & 0xFFFFFFFF)
        return [("Teredo server", server), ("Teredo client", ipaddress.IPv4Address(~n & 0xFFFFFFFF))]
    return []


def _special(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> SpecialBlock | None:
    table = IPV4_SPECIAL if ip.version == 4 else IPV6_SPECIAL
    return next((b for b in table if ip in b.network), None)


def address_category(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` must not be reached (the registry's name of its block), or None when it may be.

    Reads only the tables above, never the standard library's ``is_private`` / ``is_global``, whose
    answers changed between Python versions (3.11 calls 192.0.0.8 public, for one)."""
    if ip.version == 6:
        carried = embedded_ipv4(ip)  # type: ignore[arg-type]
        if carried:
            for form, v4 in carried:
                why = address_category(v4)
                if why is not None:
                    return f"{form} form of {v4}: {why}"
            return None
    block = _special(ip)
    if block is not None:
        return None if block.reachable else block.name
    if ip.version == 6 and ip not in GLOBAL_UNICAST_V6:
        return "reserved by the IETF (outside global unicast 2000::/3)"
    return None


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
                refused.append(f"{addr} is not globally reachable ({why})")
        if not ok:
            raise AddressRefused(
                f"refused to connect to {host}:{port}: {'; '.join(dict.fromkeys(refused))} "
                "(not on the fetch allow-list)"
            )
        return ok


class Deadline:
    """The wall-clock deadline of one URL (every hop and redirect of it): a watchdog thread shuts the
    sockets of the fetch down when it passes, which wakes a read blocked in the TLS handshake, the
    status line, the headers or the body, however slowly the server drips. Socket timeouts alone
    cannot do that: each byte that arrives restarts them."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        return self.at - time.monotonic()

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down at the deadline. A duplicate descriptor is kept, not the object: the
        socket may be wrapped in TLS (which detaches the original) or closed meanwhile, and a
        duplicate can never end up naming someone else's socket."""
        if sock is None or sock.fileno() < 0:
            return
        dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
        with self._lock:
            self._socks.append(dup)
            if self.expired:
                _shutdown(dup)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for s in self._socks:
                _shutdown(s)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for s in self._socks:
                s.close()
            self._socks.clear()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer or by us


_current = threading.local()  # the Deadline of the fetch running on this thread


def _watch(sock: socket.socket | None) -> None:
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


class _GuardedConnectionMixin:
    """Resolve, check and connect to the checked address: the only place a socket is opened. Every
    socket, new or reused from the pool, is put under the current fetch's :class:`Deadline`."""

    guard: AddressGuard

    def _new_conn(self) -> socket.socket:
        host, port = self._dns_host, self.port  # type: ignore[attr-defined]
        last: OSError | None = None
        for _family, addr in self.guard.permitted(host, port):
            try:
                sock = u3connection.create_connection(
                    (addr, port),
                    self.timeout,  # type: ignore[attr-defined]
                    source_address=self.source_address,  # type: ignore[attr-defined]
                    socket_options=self.socket_options,  # type: ignore[attr-defined]
                )
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"connection to {host}:{port} timed out") from exc
            except OSError as exc:
                last = exc
            else:
                _watch(sock)  # before TLS: a handshake dripped byte by byte is cut too
                return sock
        raise NewConnectionError(self, f"failed to connect to {host}:{port}: {last}")  # type: ignore[arg-type]

    def getresponse(self) -> Any:
        _watch(self.sock)  # type: ignore[attr-defined]  # a connection reused from the pool
        return super().getresponse()  # type: ignore[misc]


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


# Headers that may follow a redirect to another origin; everything else a caller passes (Authorization,
# cookies, API keys) is meant for the URL's own origin and is dropped once a redirect leaves it.
CROSS_ORIGIN_HEADERS = frozenset({"accept", "accept-language", "user-agent"})
# A redirect's body is read and dropped (so its connection can serve the next hop) when it says it
# is at most this long; a longer or unsized one costs its connection instead.
REDIRECT_BODY_DRAIN = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port filled in: what "the same origin" compares."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


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
        """GET ``url`` following at most ``max_redirects`` redirects, every hop through the guard,
        all of it within ``total_timeout_s`` of wall-clock time.

        ``headers`` other than Accept, Accept-Language and User-Agent go to ``url``'s origin only:
        once a redirect leads to another scheme, host or port they are not sent again.

        Returns the final response whatever its status (the caller reads API errors); raises
        :class:`TransientFetchError` for 429/5xx, timeouts and connection failures, :class:`FetchError`
        for everything permanent. With ``image=True`` the body must sniff as an image and non-2xx is
        an error."""
        if params:
            url = url + ("&" if urlsplit(url).query else "?") + urlencode(params, doseq=True)
        cap = self.config.max_bytes if max_bytes is None else max_bytes
        send = dict(headers or {})
        home = origin(url)
        redirects: list[str] = []
        current = url
        deadline = Deadline(self.config.total_timeout_s)
        _current.deadline = deadline
        try:
            while True:
                scheme = urlsplit(current).scheme.lower()
                if scheme not in ("http", "https"):
                    raise FetchError(f"refused URL scheme {scheme or 'none'!r} in {current[:200]}")
                resp = self._open(current, send, deadline)
                done = False
                try:
                    if resp.status in REDIRECT_STATUSES and resp.headers.get("location"):
                        if len(redirects) >= self.config.max_redirects:
                            raise FetchError(
                                f"too many redirects (more than {self.config.max_redirects}) from {url}"
                            )
                        redirects.append(current)
                        current = urljoin(current, resp.headers["location"])
                        if origin(current) != home:
                            send = {k: v for k, v in send.items() if k.lower() in CROSS_ORIGIN_HEADERS}
                        continue
                    hdrs = {k.lower(): v for k, v in resp.headers.items()}
                    if resp.status in TRANSIENT_STATUSES:
                        raise TransientFetchError(
                            f"HTTP {resp.status} from {current}", retry_after_s(hdrs), status=resp.status
                        )
                    if image and not 200 <= resp.status < 300:
                        raise FetchError(f"HTTP {resp.status} from {current}")
                    body, mime = self._read(resp, current, hdrs, cap, deadline, image)
                    done = True
                    return Response(current, resp.status, hdrs, body, mime, redirects)
                finally:
                    self._finish(resp, done)
        finally:
            _current.deadline = None
            deadline.close()

    def image(self, url: str, headers: Mapping[str, str] | None = None) -> Response:
        return self.get(url, headers=headers, image=True)

    @staticmethod
    def _finish(resp: Any, read_all: bool) -> None:
        """Give the connection back only when nothing of this response is left on it: a connection
        with an unread body would hand that body to the next request (``ResponseNotReady``)."""
        if not read_all:
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) <= REDIRECT_BODY_DRAIN:
                resp.drain_conn()
            else:
                resp.close()  # the pool opens a new connection next time
        resp.release_conn()

    def _timed_out(self, url: str, what: str) -> TransientFetchError:
        return TransientFetchError(
            f"timed out: {url} took longer than the {self.config.total_timeout_s:g}s deadline ({what})"
        )

    def _open(self, url: str, headers: Mapping[str, str], deadline: Deadline) -> Any:
        left = deadline.left()
        if left <= 0:
            raise self._timed_out(url, "before connecting")
        timeout = urllib3.Timeout(
            connect=min(self.config.connect_timeout_s, left), read=min(self.config.read_timeout_s, left)
        )
        try:
            return self._pool.request(
                "GET",
                url,
                headers=dict(headers),
                redirect=False,
                retries=False,
                preload_content=False,
                timeout=timeout,
            )
        except (ConnectTimeoutError, ReadTimeoutError) as exc:
            if deadline.expired:
                raise self._timed_out(url, "connecting or reading the response head") from None
            raise TransientFetchError(f"timed out connecting to or waiting for {url}: {exc}") from None
        except urllib3.exceptions.LocationParseError as exc:
            raise FetchError(f"malformed URL {url[:200]!r}: {exc}") from None
        except HTTPError as exc:
            cause = exc.__context__ if isinstance(exc.__context__, BadInput) else None
            if cause is not None:  # the guard's refusal, wrapped by urllib3
                raise cause from None
            if deadline.expired:
                raise self._timed_out(url, "connecting or reading the response head") from None
            raise TransientFetchError(f"connection to {url} failed: {exc}") from None

    def _read(
        self, resp: Any, url: str, headers: dict[str, str], cap: int, deadline: Deadline, image: bool
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
                if deadline.expired:
                    raise self._timed_out(url, f"{size} bytes of the body read")
        except ReadTimeoutError:
            if deadline.expired:
                raise self._timed_out(url, f"{size} bytes of the body read") from None
            raise TransientFetchError(
                f"server stalled: no data for {self.config.read_timeout_s:g}s reading {url} ({size} bytes so far)"
            ) from None
        except ProtocolError as exc:
            if deadline.expired:
                raise self._timed_out(url, f"{size} bytes of the body read") from None
            raise TransientFetchError(f"connection broken reading {url}: {exc}") from None
        if deadline.expired:  # the watchdog's shutdown can look like a clean end of a chunked body
            raise self._timed_out(url, f"{size} bytes of the body read")
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
