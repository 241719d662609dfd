"""The review service probed as an attacker would, from outside: a real uvicorn server on loopback
(`misinfo moderate`'s configuration, or the real process), raw sockets for hostile peers, several
127.x.y.z source addresses for "many clients". One test per finding of the probe:

- bodies: refused before they are read (401 without a credential, 413 over the route's limit);
- login: wrong passwords from many addresses do not lock a user out, and the password-hash work is
  the same whether the user exists or not (counted, not timed);
- sessions end with the credential they were opened under (new token, password or role);
- no query string reaches a 500; Swagger UI comes from here, with the pages' security headers;
- X-Forwarded-For is believed only from named proxies (none by default, loopback included);
- the login page shows no attacker-chosen text; the upload form keeps the API's caption limit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import signal
import socket
import urllib.request
from typing import Any

import pytest
import redis

from core.keys import Keys
from misinfo.devstack.stack import wait_for
from tests.conftest import free_port, run_cli, start_cli
from tests.integration.review_server import (
    ReviewServer,
    csrf_of,
    login,
    read_response,
    send_until_refused,
    stream_until_answered,
)
from tests.integration.test_moderation_api import add_user, bearer, image_bytes

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
ZERO = "0" * 64


@pytest.fixture
def server(settings):  # type: ignore[no-untyped-def]
    with ReviewServer(settings) as srv:
        yield srv


def raw(srv: ReviewServer, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
    return sock


# -- 1. bodies ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "content_type", "expect_continue"),
    [
        ("/api/uploads", "multipart/form-data; boundary=x", False),
        ("/api/uploads", "multipart/form-data; boundary=x", True),
        ("/api/users", "application/json", False),
    ],
)
def test_an_anonymous_body_is_refused_401_before_a_byte_of_it_is_read(
    server, path, content_type, expect_continue
):
    size = 150 * MiB
    expect = "Expect: 100-continue\n" if expect_continue else ""
    sock = raw(
        server,
        f"POST {path} HTTP/1.1\nHost: review\nContent-Type: {content_type}\nContent-Length: {size}\n{expect}",
    )
    with sock:
        # Nothing of the body is sent yet: a server that waited for it would never answer.
        status, headers, body = read_response(sock)
        assert status == 401, body
        assert headers["www-authenticate"] == "Bearer" and headers["connection"] == "close"
        assert b"authentication required" in body
        # And it will not take the body afterwards either: the connection is closed.
        sent = send_until_refused(sock, size, b"\0" * MiB)
    assert sent < size // 4, sent
    assert server.app.body_bytes == 0


def test_a_declared_body_over_the_limit_is_refused_413_before_it_is_read(server, settings):
    token = add_user(settings, "ulla", "moderator")
    limit = settings.max_download_bytes + 64 * 1024
    sock = raw(
        server,
        "POST /api/uploads HTTP/1.1\nHost: review\nContent-Type: multipart/form-data; boundary=x\n"
        f"Authorization: Bearer {token}\nContent-Length: {limit + 1}\n",
    )
    with sock:
        status, headers, body = read_response(sock)
    assert status == 413 and headers["connection"] == "close"
    assert f"an upload may carry at most {limit} bytes".encode() in body
    # A page's form: the general limit, a message a browser shows.
    sock = raw(
        server, "POST /login HTTP/1.1\nHost: review\nContent-Type: text/plain\nContent-Length: 1048576\n"
    )
    with sock:
        status, headers, body = read_response(sock)
    assert status == 413 and headers["content-type"].startswith("text/plain")
    assert b"at most 65536 bytes" in body
    assert server.app.body_bytes == 0


@pytest.mark.parametrize("path", ["/api/users", "/api/uploads"])
def test_a_streamed_body_is_stopped_413_once_it_passes_the_limit(settings, path):
    small = dataclasses.replace(settings, max_download_bytes=256 * 1024)  # a short test
    token = add_user(settings, "aino", "admin")
    if path == "/api/users":
        limit, kind, first = 64 * 1024, "application/json", b'{"name": "'
    else:
        limit, kind = small.max_download_bytes + 64 * 1024, "multipart/form-data; boundary=x"
        first = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    with ReviewServer(small) as server:
        sock = raw(
            server,
            f"POST {path} HTTP/1.1\nHost: review\nContent-Type: {kind}\nAuthorization: Bearer {token}\n"
            "Transfer-Encoding: chunked\n",
        )
        with sock:
            status, sent = stream_until_answered(sock, (limit + 4 * MiB) // 65536, b"a" * 65536, first)
        assert status == 413
        # Stopped within a few reads past the limit (the server hands the app what it has buffered).
        assert limit < server.app.body_bytes <= limit + 2 * MiB, server.app.body_bytes
        assert sent >= server.app.body_bytes


# -- 4, 8. login ----------------------------------------------------------------------------------
def test_wrong_logins_from_many_addresses_do_not_lock_the_user_out(server, settings):
    token = add_user(settings, "vicky", "moderator")  # a name shown on the label and stats pages
    for i in range(2, 14):  # 12 addresses, one wrong password each (the probe needed 11)
        with server.client(f"127.0.0.{i}") as c:
            assert login(c, "vicky", f"wrong guess number {i}").status_code == 401
    with server.client("127.0.0.200") as c:
        r = login(c, "vicky", token)
        assert r.status_code == 303, r.text
        assert c.get("/queue").status_code == 200


def test_a_throttled_pair_backs_off_but_the_api_token_and_other_addresses_still_work(settings):
    with ReviewServer(settings, login_backoff_base_s=60) as srv:
        token = add_user(settings, "wanda", "moderator")
        with srv.client("127.0.0.7") as c:
            for _ in range(settings.login_backoff_after):
                assert login(c, "wanda", "not the password").status_code == 401
            r = login(c, "wanda", token)
            assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60
            # The API with the token is no login: never throttled.
            assert c.get("/api/queue", headers=bearer(token)).status_code == 200
        with srv.client("127.0.0.8") as c:
            assert login(c, "wanda", token).status_code == 303


def test_unknown_and_known_users_cost_the_same_password_hash_work(server, settings, monkeypatch):
    add_user(settings, "nopass", "viewer")
    add_user(settings, "haspass", "viewer")
    assert run_cli(settings, "users", "passwd", "haspass", "--password", "the right password").returncode == 0
    calls: list[int] = []
    scrypt = hashlib.scrypt

    def counted(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return scrypt(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    work = {}
    for name in ("nobody-by-this-name", "nopass", "haspass"):
        with server.client() as c:
            before = len(calls)
            assert login(c, name, "a wrong password").status_code == 401
            work[name] = len(calls) - before
    assert work == {"nobody-by-this-name": 1, "nopass": 1, "haspass": 1}


# -- 5. sessions ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        ("token", "{name}"),
        ("passwd", "{name}", "--password", "a brand new password"),
        ("role", "{name}", "viewer"),
    ],
)
def test_a_new_token_password_or_role_ends_the_users_sessions(server, settings, change):
    name = f"sam-{change[0]}"
    token = add_user(settings, name, "moderator")
    with server.client() as c:
        assert login(c, name, token).status_code == 303
        page = c.get("/queue")
        assert page.status_code == 200 and c.get("/api/queue").status_code == 200
        out = run_cli(settings, "users", change[0], *(a.format(name=name) for a in change[1:]))
        assert out.returncode == 0, out.stderr
        r = c.get("/queue")
        assert r.status_code == 303 and r.headers["location"].endswith("&error=session-ended")
        assert c.get("/api/queue").status_code == 401
        r = c.post("/logout", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


# -- 7. query strings -----------------------------------------------------------------------------
def test_no_query_string_reaches_a_500(server, settings):
    token = add_user(settings, "quinn", "viewer")
    with server.client() as c:
        assert login(c, "quinn", token).status_code == 303
        for path in (
            "/queue?done=abc",
            f"/items/{ZERO}?done=abc",
            "/queue?offset=1e23",
            "/queue?offset=100000000000000000000000",
            "/queue?limit=-5",
            "/queue?label=%3Cscript%3E",
            f"/items/{ZERO}?done={ZERO}:bogus",
        ):
            r = c.get(path)
            assert r.status_code == 422, (path, r.status_code)
            assert "Bad value for" in r.text and r.headers["content-type"].startswith("text/html")
        for path in (
            "/api/queue?offset=99999999999999999999",
            "/api/queue?offset=1e23",
            "/api/audit?count=0",
        ):
            r = c.get(path, headers=bearer(token))
            assert r.status_code in (403, 422), (path, r.status_code)  # audit: a viewer's 403 first
        assert c.get(f"/items/{ZERO}?done={ZERO}:authentic").status_code == 404  # a valid one still works


# -- 9. API docs ----------------------------------------------------------------------------------
def test_swagger_ui_is_served_from_here_with_the_pages_security_headers(server):
    with server.client() as c:
        page = c.get("/api/docs")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        nonce = csp.split("'nonce-")[1].split("'")[0]
        assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert (
            page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
        )
        assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
        assert page.text.count(f'nonce="{nonce}"') == 2
        js = c.get("/api/docs/swagger-ui-bundle.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert len(js.content) > 500_000 and js.headers["x-content-type-options"] == "nosniff"
        assert c.get("/api/docs/swagger-ui.css").status_code == 200
        assert c.get("/api/docs/redoc.standalone.js").status_code == 404
        assert c.get("/api/docs/..%2f..%2fcore.py").status_code == 404


# -- 10. proxies ----------------------------------------------------------------------------------
def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - a loopback URL of our own
            return bool(r.status == 200)
    except OSError:
        return False


def test_forwarded_for_from_loopback_is_not_believed_by_default(settings, tmp_path):
    # The real `misinfo moderate`, with its default flags.
    port = free_port()
    proc = start_cli(settings, "moderate", "--port", str(port), log=tmp_path / "moderate.log")
    srv: Any = type("S", (), {"base": f"http://127.0.0.1:{port}"})
    try:
        wait_for(lambda: _up(srv.base + "/login") or proc.poll() is not None, 60, 0.1, "misinfo moderate")
        assert proc.poll() is None, (tmp_path / "moderate.log").read_text()[-3000:]
        token = add_user(settings, "xavier", "viewer")
        import httpx

        with httpx.Client(base_url=srv.base, timeout=30) as c:
            statuses = [  # one more than the free failures of a (name, address) pair (5)
                login(c, "xavier", "wrong password", **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                for i in range(6)
            ]
            # Every attempt counted against the peer's own address: the pair backs off.
            assert statuses[-1] == 429, statuses
            assert login(c, "xavier", token, **{"X-Forwarded-For": "203.0.113.99"}).status_code == 429
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    r = redis.Redis.from_url(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    assert r.exists(keys.login_pair("127.0.0.1", "xavier")) and not r.exists(
        keys.login_address("203.0.113.1")
    )


def test_forwarded_for_is_believed_from_a_named_proxy(settings):
    with ReviewServer(settings, forwarded_allow_ips="127.0.0.1") as srv:
        token = add_user(settings, "yuki", "viewer")
        with srv.client() as c:
            for _ in range(5):  # the free failures of a (name, address) pair: backoff starts
                assert login(c, "yuki", "wrong", **{"X-Forwarded-For": "203.0.113.5"}).status_code == 401
            # Another client behind the proxy is another address.
            assert login(c, "yuki", token, **{"X-Forwarded-For": "198.51.100.9"}).status_code == 303
    r = redis.Redis.from_url(settings.redis_url)
    assert r.exists(Keys(settings.redis_prefix).login_address("203.0.113.5"))


# -- 11. login text, caption limit ----------------------------------------------------------------
def test_the_login_page_shows_only_known_messages(server):
    with server.client() as c:
        r = c.get("/login", params={"error": "Your account is locked: call +1 555 0100"})
        assert r.status_code == 200 and "call +1 555" not in r.text
        assert "Your session has ended" in c.get("/login?error=session-ended").text


def test_the_upload_form_refuses_a_caption_the_api_refuses(server, settings):
    token = add_user(settings, "cara", "moderator")
    data = image_bytes(91)
    with server.client() as c:
        assert login(c, "cara", token).status_code == 303
        page = c.get("/upload")
        r = c.post(
            "/upload",
            data={"csrf": csrf_of(page.text), "caption": "c" * 200_000},
            files={"file": ("a.png", data, "image/png")},
        )
        assert r.status_code == 422 and "caption is longer than 5000 characters" in r.text
        assert 'maxlength="5000"' in page.text  # and the browser stops there already
        api = c.post(
            "/api/uploads",
            data={"caption": "c" * 5001},
            files={"file": ("a.png", data, "image/png")},
            headers={**bearer(token)},
        )
        assert api.status_code == 422


# -- schemathesis's findings ----------------------------------------------------------------------
def test_a_405_names_every_method_the_path_has(server, settings):
    token = add_user(settings, "olli", "admin")
    with server.client() as c:
        for method, path, allow in (
            ("OPTIONS", "/api/users", "GET, POST"),
            ("DELETE", "/api/queue", "GET"),
            ("PUT", f"/api/items/{ZERO}/label", "POST"),
        ):
            r = c.request(method, path, headers=bearer(token))
            assert r.status_code == 405 and r.headers["allow"] == allow, (method, path, r.headers)
