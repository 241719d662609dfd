"""The fetcher against hostile and awkward servers on loopback, as an outside probe found them:
a body or a response head dripped a byte at a time (the per-URL deadline must cut both), a redirect
that would carry an API token to another origin, and a redirect to another path of the same host.

No broker or Redis: real sockets and real HTTP servers only."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from ingest.collectors.x import XCollector
from ingest.fetcher import FetchConfig, Fetcher, TransientFetchError, parse_allow
from tests.integration.ingest_support.server import LocalServer, Reply

pytestmark = pytest.mark.integration


class DripServer:
    """Answers one GET by sending ``data`` one byte per ``interval`` seconds, and records how many
    bytes went out before the client hung up (or all of them, if it never does)."""

    def __init__(self, data: bytes, interval: float = 0.05) -> None:
        self.data = data
        self.interval = interval
        self.sent = 0
        self.finished = threading.Event()
        self.client_left = False
        self._stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        try:
            conn.recv(65536)  # the request head
            for i in range(len(self.data)):
                if self._stop.wait(self.interval):
                    break
                conn.sendall(self.data[i : i + 1])
                self.sent += 1
        except OSError:
            self.client_left = True
        finally:
            conn.close()
            self.finished.set()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def drip():
    servers: list[DripServer] = []

    def make(data: bytes) -> DripServer:
        servers.append(DripServer(data))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def fetcher_for(*ports: int, total_s: float = 1.0, read_s: float = 2.0) -> Fetcher:
    # read_s is longer than the drip interval on purpose: each byte restarts a socket timeout,
    # so only the deadline can end these fetches.
    return Fetcher(
        FetchConfig(
            total_timeout_s=total_s,
            read_timeout_s=read_s,
            allow=parse_allow(",".join(f"127.0.0.1:{p}" for p in ports)),
        )
    )


def test_a_body_dripped_under_its_content_length_is_cut_at_the_deadline(drip):
    n = 300  # 15 s of dripping
    head = f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {n}\r\n\r\n".encode()
    srv = drip(head + b"\xff\xd8\xff\xe0" + b"\0" * (n - 4))
    with pytest.raises(TransientFetchError, match="deadline"):
        fetcher_for(srv.port).image(f"http://127.0.0.1:{srv.port}/slow.jpg")
    assert srv.finished.wait(15)
    assert srv.client_left and srv.sent < len(srv.data), srv.sent


def test_a_response_head_dripped_byte_by_byte_is_cut_at_the_deadline(drip):
    head = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"p" * 300 + b"\r\nContent-Length: 2\r\n\r\n{}"
    srv = drip(head)
    with pytest.raises(TransientFetchError, match="deadline"):
        fetcher_for(srv.port).get(f"http://127.0.0.1:{srv.port}/api")
    assert srv.finished.wait(15)
    assert srv.client_left and srv.sent < len(head) - 4, srv.sent  # still inside the head


SECRET_HEADERS = {
    "Authorization": "Bearer s3cret-token",
    "Cookie": "session=s3cret",
    "X-Api-Key": "s3cret-key",
    "Accept": "application/json",
}


@pytest.mark.parametrize("other", ["port", "host"])
def test_credentials_do_not_follow_a_redirect_to_another_origin(other):
    with LocalServer() as a, LocalServer() as b:
        b.route("/land", Reply.json({"ok": True}))
        if other == "port":
            target = b.url("/land")  # 127.0.0.1, another port
            landing = b
        else:
            a.route("/land", Reply.json({"ok": True}))
            target = f"http://localhost:{a.port}/land"  # the same server under another host name
            landing = a
        a.route("/start", Reply(302, headers={"Location": target}))
        resp = fetcher_for(a.port, b.port).get(a.url("/start"), headers=SECRET_HEADERS)
        assert resp.status == 200 and resp.redirects == [a.url("/start")]
        (first,) = a.hits("/start")
        assert first.headers["authorization"] == "Bearer s3cret-token"
        (landed,) = landing.hits("/land")
        for name in ("authorization", "cookie", "x-api-key"):
            assert name not in landed.headers, (name, landed.headers)
        assert landed.headers["accept"] == "application/json"


def test_the_x_collectors_bearer_token_stays_on_the_api_host(tmp_path: Path):
    with LocalServer() as api, LocalServer() as elsewhere:
        elsewhere.route("/2/users/by/username/alice", Reply.json({"data": {"id": "42"}}))
        api.route(
            "/2/users/by/username/alice",
            Reply(302, headers={"Location": elsewhere.url("/2/users/by/username/alice")}),
        )
        collector = XCollector(
            None,  # type: ignore[arg-type]  # no items are ingested here
            tmp_path / "cursor.json",
            fetcher=fetcher_for(api.port, elsewhere.port, total_s=10),
            api_url=api.base,
            bearer_token="x-s3cret",
            users=["alice"],
        )
        assert collector._user_id("alice") == "42"
        assert api.hits("/2/users/by/username/alice")[0].headers["authorization"] == "Bearer x-s3cret"
        assert "authorization" not in elsewhere.hits("/2/users/by/username/alice")[0].headers


def test_a_redirect_to_another_path_on_the_same_host_works_and_keeps_credentials():
    with LocalServer() as a:
        a.route("/old", Reply(302, b"moved to /new", headers={"Location": "/new"}, content_type="text/plain"))
        a.route("/new", Reply.json({"here": True}))
        fetcher = fetcher_for(a.port, total_s=10)
        # Twice: the second fetch reuses the pooled connection the redirect was read on.
        for _ in range(2):
            resp = fetcher.get(a.url("/old"), headers=SECRET_HEADERS)
            assert resp.status == 200 and resp.json() == {"here": True}
        assert all(r.headers["authorization"] == "Bearer s3cret-token" for r in a.hits("/new"))


def test_a_redirect_with_a_large_body_still_leads_on():
    with LocalServer() as a:
        a.route("/old", Reply(301, b"x" * 200_000, headers={"Location": "/new"}))
        a.route("/new", Reply.json({"here": True}))
        fetcher = fetcher_for(a.port, total_s=10)
        for _ in range(2):
            assert fetcher.get(a.url("/old")).json() == {"here": True}
