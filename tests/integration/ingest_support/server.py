"""A local HTTP server for ingest's integration tests: routes answer like the real APIs and hosts do
(feeds, JSON APIs, images, redirects, stalls, giant bodies), and every request is recorded."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        return self.query.get(name, [default])[0]


@dataclass
class Reply:
    status: int = 200
    body: bytes | Callable[[Any], None] = b""  # a callable writes the body itself (streams, stalls)
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/octet-stream"

    @classmethod
    def json(cls, doc: Any, status: int = 200, **headers: str) -> Reply:
        return cls(status, json.dumps(doc).encode(), dict(headers), "application/json")


Handler = Callable[[Request], Reply]


class LocalServer:
    """``with LocalServer() as srv: srv.route('/path', handler_or_reply); srv.url('/path')``."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler | Reply] = {}
        self.requests: list[Request] = []
        self.release = threading.Event()  # stalled handlers wait on this; set at shutdown
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                outer.requests.append(req)
                route = outer.routes.get(parts.path)
                reply = Reply(404, b"not found", content_type="text/plain") if route is None else route
                if callable(reply):
                    reply = reply(req)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    if callable(reply.body):
                        self.send_header("Connection", "close")
                        self.end_headers()
                        reply.body(self.wfile)
                        self.close_connection = True
                    else:
                        self.send_header("Content-Length", str(len(reply.body)))
                        self.end_headers()
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = _serve
            do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, handler: Handler | Reply) -> str:
        self.routes[path] = handler
        return self.url(path)

    def stall(self, first: bytes = b"") -> Callable[[Any], None]:
        """A body that sends ``first`` and then nothing until the server shuts down."""

        def write(wfile: Any) -> None:
            wfile.write(first)
            wfile.flush()
            self.release.wait(120)

        return write

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


def endless(total: int, chunk: int = 1 << 16) -> Callable[[Any], None]:
    """A body of ``total`` bytes streamed without Content-Length (the reader must stop it)."""

    def write(wfile: Any) -> None:
        block = b"\xff\xd8\xff\xe0" + b"\0" * (chunk - 4)
        sent = 0
        while sent < total:
            wfile.write(block)
            sent += len(block)
            block = b"\0" * chunk

    return write
