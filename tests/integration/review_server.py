"""The review service as an outside client meets it: the app on a real uvicorn server (the same
configuration `misinfo moderate` uses) on a free loopback port, in a thread of the test process so
that a test can count what the app did; and raw-socket helpers for peers that misbehave."""

from __future__ import annotations

import re
import select
import socket
import threading
from typing import Any

import httpx
import redis.asyncio as aioredis
import uvicorn

from core.config import Settings
from misinfo.devstack.stack import wait_for
from moderation.app import create_app
from moderation.cli import server_config
from moderation.service import Moderation
from tests.conftest import free_port


class BodyCounter:
    """ASGI wrapper counting the request-body bytes the app pulled from the server."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.body_bytes = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                self.body_bytes += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


class ReviewServer:
    """``with ReviewServer(settings) as srv: httpx.get(srv.url("/login"))``."""

    def __init__(
        self, settings: Settings, *, forwarded_allow_ips: str | None = None, **moderation: Any
    ) -> None:
        self.settings = settings
        self.moderation = Moderation(settings, aioredis.Redis.from_url(settings.redis_url), **moderation)
        self.app = BodyCounter(create_app(settings, self.moderation))
        self.port = free_port()
        config = server_config(
            self.app, settings, "127.0.0.1", self.port, forwarded_allow_ips, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ReviewServer:
        self._thread.start()
        wait_for(lambda: self.server.started or not self._thread.is_alive(), 30, 0.05, "the review service")
        assert self.server.started, "the review service did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self._thread.join(30)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def client(self, source: str = "127.0.0.1", **kwargs: Any) -> httpx.Client:
        """An HTTP client whose connections come from ``source`` (any 127.x.y.z is this machine)."""
        transport = httpx.HTTPTransport(local_address=source)
        return httpx.Client(base_url=self.base, transport=transport, timeout=30, **kwargs)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:2000]
    return m.group(1)


def login(c: httpx.Client, name: str, secret: str, **headers: str) -> httpx.Response:
    """The login page as a browser uses it: GET the form (and its cookie), POST it back."""
    page = c.get("/login", headers=headers)
    return c.post(
        "/login",
        data={"name": name, "secret": secret, "next": "/queue", "csrf": csrf_of(page.text)},
        headers=headers,
    )


# -- raw sockets ----------------------------------------------------------------------------------
def read_response(sock: socket.socket, timeout_s: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One response (after any 1xx), parsed by hand; raises TimeoutError when none comes."""
    sock.settimeout(timeout_s)
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before a response: {data[:200]!r}")
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if 100 <= status < 200:
            continue
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(data) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return status, headers, data[:length]


def send_until_refused(sock: socket.socket, total: int, chunk: bytes) -> int:
    """Send ``chunk`` until ``total`` bytes went out or the server stopped taking them; how many went."""
    sent = 0
    sock.settimeout(10)
    try:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    return sent


def stream_until_answered(
    sock: socket.socket, chunks: int, chunk: bytes, first: bytes = b""
) -> tuple[int, int]:
    """Send ``first`` and then ``chunks`` chunks, in chunked encoding, reading the answer as soon as
    one is there (before a reset could drop it); returns (status, bytes of body sent)."""
    sent = 0
    if first:
        sock.sendall(f"{len(first):x}\r\n".encode() + first + b"\r\n")
        sent += len(first)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    for _ in range(chunks):
        readable, _, _ = select.select([sock], [], [], 0.01)
        if readable:
            break
        try:
            sock.sendall(frame)
        except OSError:
            break
        sent += len(chunk)
    status, _, _ = read_response(sock)
    return status, sent
