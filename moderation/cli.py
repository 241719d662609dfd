"""``misinfo moderate`` (the review service) and ``misinfo users`` (accounts, roles, API tokens)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from core.config import Settings, load_settings
from core.keys import Keys

T = TypeVar("T")


@click.command()
@click.option("--port", type=int, default=8080, show_default=True, help="HTTP port")
@click.option(
    "--host",
    default=None,
    help="address to bind (default: 127.0.0.1 when the broker is local, else 0.0.0.0, as the worker)",
)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    help="reverse proxies whose X-Forwarded-For/-Proto are believed (client address for the login "
    "throttle, https for cookies): comma-separated IPs or CIDRs; default "
    "MISINFO_MODERATION_FORWARDED_ALLOW_IPS, which is empty: no proxy, loopback included",
)
def moderate(port: int, host: str | None, forwarded_allow_ips: str | None) -> None:
    """Run the review service: queue, item and stats pages, and the JSON API under /api."""
    import uvicorn

    from core.reach import require_port, wait_until_reachable
    from moderation.app import create_app

    settings = load_settings()
    if host is None:
        host = "127.0.0.1" if "127.0.0.1" in settings.kafka_bootstrap else "0.0.0.0"  # noqa: S104
    require_port("the review service", host, port, "--port")
    # Started before the stack, it waits (labels need the broker, everything else Redis).
    wait_until_reachable(
        settings, ("redis", "broker"), who="review service", say=lambda m: click.echo(m, err=True)
    )
    click.echo(f"review service on http://{host}:{port}/ (API: /api, OpenAPI: /api/openapi.json)", err=True)
    config = server_config(create_app(settings), settings, host, port, forwarded_allow_ips)
    uvicorn.Server(config).run()


def server_config(
    app: Any, settings: Settings, host: str, port: int, forwarded_allow_ips: str | None = None, **extra: Any
) -> Any:
    """The uvicorn configuration of ``misinfo moderate`` (the tests serve the app with it too).

    Proxy headers are read only from the proxies named (the option, else the setting); with none
    named they are not read at all. uvicorn's own default would trust 127.0.0.1, which lets any
    local process pick the address the login throttle sees.

    uvloop and httptools (C) in place of asyncio's loop and h11 (pure Python): under 60 clients the
    service is CPU-bound, and they take a good part of each request's cost off it."""
    import uvicorn

    trusted = settings.moderation_forwarded_allow_ips if forwarded_allow_ips is None else forwarded_allow_ips
    trusted = ",".join(p.strip() for p in trusted.split(",") if p.strip())
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the logging that `misinfo` configured
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        access_log=True,
        loop="uvloop",
        http="httptools",
        **extra,
    )


def _run(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    import redis.asyncio as aioredis

    from moderation.auth import AuthError, UserStore

    async def go() -> T:
        r = aioredis.Redis.from_url(settings.redis_url)
        try:
            return await action(UserStore(r, settings.redis_prefix))
        finally:
            await r.aclose()

    try:
        return asyncio.run(go())
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None


def _audit(settings: Settings, **fields: str) -> None:
    import getpass
    import time

    import redis

    r = redis.Redis.from_url(settings.redis_url)
    try:
        entry: dict[str, str | float] = {**fields, "by": f"cli:{getpass.getuser()}", "at": time.time()}
        r.xadd(Keys(settings.redis_prefix).audit(), entry)  # type: ignore[arg-type]
    finally:
        r.close()


ROLE = click.Choice(["viewer", "moderator", "admin"])


@click.group()
def users() -> None:
    """Manage review-service users: roles viewer < moderator < admin, API tokens, passwords."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=ROLE, required=True, help="viewer (read), moderator (label, upload), admin")
def users_add(name: str, role: str) -> None:
    """Create a user; print its API token once, as the last line (only a digest is stored)."""
    settings = load_settings()
    token = _run(settings, lambda store: store.add(name, role))
    _audit(settings, action="user_add", user=name, role=role)
    click.echo(f"created {role} {name}; the API token below is shown only now:", err=True)
    click.echo(token)


@users.command("token")
@click.argument("name")
def users_token(name: str) -> None:
    """Replace NAME's API token (the old one stops working, NAME's browser sessions end); print the
    new one as the last line."""
    settings = load_settings()
    token = _run(settings, lambda store: store.rotate_token(name))
    _audit(settings, action="user_token", user=name)
    click.echo(token)


@users.command("passwd")
@click.argument("name")
@click.password_option(help="the new password (asked when not given)")
def users_passwd(name: str, password: str) -> None:
    """Set NAME's password for the login page (stored with scrypt); NAME's browser sessions end."""
    settings = load_settings()
    _run(settings, lambda store: store.set_password(name, password))
    _audit(settings, action="user_passwd", user=name)
    click.echo(f"password set for {name}", err=True)


@users.command("role")
@click.argument("name")
@click.argument("role", type=ROLE)
def users_role(name: str, role: str) -> None:
    """Change NAME's role; NAME's browser sessions end (they were opened with the old role)."""
    settings = load_settings()
    _run(settings, lambda store: store.set_role(name, role))
    _audit(settings, action="user_role", user=name, role=role)
    click.echo(f"{name} is now {role}", err=True)


@users.command("remove")
@click.argument("name")
def users_remove(name: str) -> None:
    """Delete NAME, its token and its sessions (its labels stay, with its name)."""
    settings = load_settings()
    _run(settings, lambda store: store.remove(name))
    _audit(settings, action="user_remove", user=name)
    click.echo(f"removed {name}", err=True)


@users.command("list")
def users_list() -> None:
    """Users and roles, one JSON object a line."""
    import json

    settings = load_settings()
    for u in _run(settings, lambda store: store.list()):
        click.echo(json.dumps({"name": u.name, "role": u.role, "created_at": u.created_at}))
