"""``misinfo collect <source> ...``: run a collector continuously (``--every``) or once (``--once``).

Sources: folder, reddit, x, instagram, rss, web. Targets come from the arguments or, when none are
given, from the settings (``MISINFO_REDDIT_SUBREDDITS``, ``MISINFO_X_QUERIES``, ...), so a container
can run ``misinfo collect reddit --every 60s`` with everything in its environment.

With ``--once`` it shows a progress bar on stderr and prints, last, one JSON line on stdout: seen,
published, duplicates, dead_letters. Exit status: 0 done; 1 the source failed (bad credentials, gave
up after retries); 2 the broker was unreachable (the cursor was not saved: a rerun redoes the work).
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from core.config import Settings, load_settings
from ingest.factory import build_fetcher, build_ingestor

log = logging.getLogger(__name__)


def parse_duration(text: str) -> float:
    """``60``, ``60s``, ``5m``, ``1h`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise click.BadParameter(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def split_list(text: str, sep: str = ",") -> list[str]:
    return [part.strip() for part in text.split(sep) if part.strip()]


def collector_kwargs(settings: Settings, source: str, key: str) -> dict[str, Any]:
    """What every collector takes: the ingestor, its cursor file, the fetcher and the backoff."""
    from ingest.collectors.base import Backoff

    return {
        "ingestor": build_ingestor(settings),
        "cursor_path": cursor_path(settings, source, key),
        "fetcher": build_fetcher(settings),
        "backoff": Backoff(max_s=settings.collect_backoff_max_s),
    }


def cursor_path(settings: Settings, source: str, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")[:120] or "default"
    return Path(settings.state_dir) / "cursors" / source / f"{safe}.json"


def run_collector(collector: Any, once: bool, every: str, total: int | None = None) -> None:
    """Shared run logic: progress + JSON summary with --once; a stoppable loop otherwise."""
    from ingest.collectors.base import SourceError
    from ingest.exceptions import PublishError, StoreUnavailable
    from ingest.fetcher import TransientFetchError

    signal.signal(signal.SIGTERM, lambda *_: collector.stop())
    code = 0
    try:
        if once:
            progress = Progress(total)
            counts = collector.run_once(on_item=progress)
            progress.done()
            click.echo(json.dumps(counts))
        else:
            collector.run_forever(parse_duration(every))
    except KeyboardInterrupt:
        collector.stop()
    except PublishError as exc:
        log.error("%s: broker unavailable, stopping without saving the cursor: %s", collector.name, exc)
        code = 2
    except StoreUnavailable as exc:  # the message carries its remedy; items not yet published stay
        log.error("%s: stopping; the cursor stays at the last published item: %s", collector.name, exc)
        code = 2
    except (SourceError, TransientFetchError) as exc:
        log.error("%s: source failed: %s", collector.name, exc)
        code = 1
    finally:
        try:
            collector.ingestor.publisher.close()
        except PublishError as exc:
            log.error("%s: could not flush the last records: %s", collector.name, exc)
            code = 2
    if code:
        sys.exit(code)


class Progress:
    """A progress bar on stderr (a counter when the total is unknown); on a pipe, a line every 100."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.n = 0
        self.outcomes: dict[str, int] = {}
        self.tty = sys.stderr.isatty()

    def __call__(self, item: Any, outcome: str) -> None:
        self.n += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if self.tty or self.n % 100 == 0:
            click.echo("\r" + self.line(), err=True, nl=not self.tty)

    def line(self) -> str:
        tally = " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        if self.total:
            width = 30
            filled = min(width, int(width * self.n / self.total))
            return f"[{'#' * filled}{'.' * (width - filled)}] {self.n}/{self.total} {tally}"
        return f"{self.n} items {tally}"

    def done(self) -> None:
        click.echo(("\r" if self.tty else "") + self.line(), err=True)


run_options = [
    click.option("--once", is_flag=True, help="one pass (a backfill), then print a JSON summary"),
    click.option("--every", default="60s", show_default=True, help="poll interval when continuous"),
]


def with_run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(run_options):
        f = opt(f)
    return f


class CollectGroup(click.Group):
    """Turns "broker unreachable" and an unusable provenance setting at start-up into a one-line
    error and exit status 2. The broker is checked before any client connects: a ``--once`` pass
    stops at once without one, a continuous collector waits for it (a line every 10 s)."""

    def invoke(self, ctx: click.Context) -> Any:
        from core.reach import Unreachable, require, wait_until_reachable
        from ingest.exceptions import PublishError
        from ingest.provenance import ProvenanceConfigError

        try:
            if "--help" not in ctx.args and "-h" not in ctx.args:
                settings = load_settings()
                if "--once" in ctx.args:
                    require(settings, "broker")
                else:
                    wait_until_reachable(
                        settings, ("broker",), who="collect", say=lambda m: click.echo(m, err=True)
                    )
            return super().invoke(ctx)
        except Unreachable as exc:
            log.error("collect: %s", exc)
            sys.exit(2)
        except (PublishError, ProvenanceConfigError) as exc:
            log.error("collect: %s", exc)
            sys.exit(2)


@click.group(cls=CollectGroup)
def collect() -> None:
    """Collect images from a source and publish image events."""


@collect.command()
@click.argument("path", type=click.Path(file_okay=False, exists=True))
@with_run_options
def folder(path: str, once: bool, every: str) -> None:
    """Every image file under PATH (recursively); with --every, new and changed files as they appear."""
    from ingest.collectors.folder import FolderCollector

    settings = load_settings()
    collector = FolderCollector(
        build_ingestor(settings),
        cursor_path=cursor_path(settings, "folder", str(Path(path).resolve())),
        root=path,
        max_bytes=settings.max_download_bytes,
    )
    run_collector(collector, once, every, total=collector.pending() if once else None)


@collect.command()
@click.argument("subreddits", nargs=-1)
@click.option(
    "--sort", type=click.Choice(["new", "hot", "rising"]), default=None, help="listing (default: setting)"
)
@click.option("--limit", default=100, show_default=True, help="posts per subreddit per pass")
@with_run_options
def reddit(subreddits: tuple[str, ...], sort: str | None, limit: int, once: bool, every: str) -> None:
    """Image posts, galleries and crossposts of SUBREDDITS (default: MISINFO_REDDIT_SUBREDDITS)."""
    from ingest.collectors.reddit import RedditCollector, make_reddit

    settings = load_settings()
    subs = list(subreddits) or split_list(settings.reddit_subreddits)
    if not subs:
        raise click.UsageError("name subreddits, or set MISINFO_REDDIT_SUBREDDITS")
    if not settings.reddit_client_id or not settings.reddit_client_secret.reveal():
        raise click.UsageError("set MISINFO_REDDIT_CLIENT_ID and MISINFO_REDDIT_CLIENT_SECRET")
    sort = sort or settings.reddit_sort
    client = make_reddit(
        settings.reddit_client_id,
        settings.reddit_client_secret.reveal(),
        settings.reddit_user_agent,
        settings.reddit_oauth_url,
        settings.reddit_url,
        settings.fetch_read_timeout_s,
    )
    collector = RedditCollector(
        **collector_kwargs(settings, "reddit", f"{sort}-{'+'.join(subs)}"),
        reddit=client,
        subreddits=subs,
        sort=sort,
        limit=limit,
    )
    run_collector(collector, once, every)


@collect.command()
@click.option("--query", "queries", multiple=True, help="recent-search query (repeatable)")
@click.option("--user", "users", multiple=True, help="username whose timeline to read (repeatable)")
@with_run_options
def x(queries: tuple[str, ...], users: tuple[str, ...], once: bool, every: str) -> None:
    """Images of X posts: recent search and user timelines (default: MISINFO_X_QUERIES, MISINFO_X_USERS)."""
    from ingest.collectors.x import XCollector

    settings = load_settings()
    q = list(queries) or split_list(settings.x_queries, ";")
    u = list(users) or split_list(settings.x_users)
    if not q and not u:
        raise click.UsageError("give --query/--user, or set MISINFO_X_QUERIES / MISINFO_X_USERS")
    if not settings.x_bearer_token.reveal():
        raise click.UsageError("set MISINFO_X_BEARER_TOKEN")
    collector = XCollector(
        **collector_kwargs(settings, "x", "default"),
        api_url=settings.x_api_url,
        bearer_token=settings.x_bearer_token,
        queries=q,
        users=u,
    )
    run_collector(collector, once, every)


@collect.command()
@click.option("--hashtag", "hashtags", multiple=True, help="hashtag whose recent media to read (repeatable)")
@click.option("--account", "accounts", multiple=True, help="IG business account id whose media to read")
@with_run_options
def instagram(hashtags: tuple[str, ...], accounts: tuple[str, ...], once: bool, every: str) -> None:
    """Instagram Graph API: hashtag recent media and business accounts' media."""
    from ingest.collectors.instagram import InstagramCollector

    settings = load_settings()
    tags = list(hashtags) or split_list(settings.instagram_hashtags)
    accts = list(accounts) or split_list(settings.instagram_accounts)
    if not tags and not accts:
        raise click.UsageError("give --hashtag/--account, or set MISINFO_INSTAGRAM_HASHTAGS / _ACCOUNTS")
    if not settings.instagram_access_token.reveal():
        raise click.UsageError("set MISINFO_INSTAGRAM_ACCESS_TOKEN")
    collector = InstagramCollector(
        **collector_kwargs(settings, "instagram", "default"),
        graph_url=settings.instagram_graph_url,
        api_version=settings.instagram_api_version,
        access_token=settings.instagram_access_token,
        user_id=settings.instagram_user_id,
        hashtags=tags,
        accounts=accts,
    )
    run_collector(collector, once, every)


@collect.command()
@click.argument("feeds", nargs=-1)
@with_run_options
def rss(feeds: tuple[str, ...], once: bool, every: str) -> None:
    """Images of RSS/Atom FEEDS: enclosures, media:content, images in entries (default: MISINFO_RSS_FEEDS)."""
    from ingest.collectors.rss import RssCollector

    settings = load_settings()
    urls = list(feeds) or split_list(settings.rss_feeds)
    if not urls:
        raise click.UsageError("name feed URLs, or set MISINFO_RSS_FEEDS")
    collector = RssCollector(**collector_kwargs(settings, "rss", "default"), feeds=urls)
    run_collector(collector, once, every)


@collect.command()
@click.argument("pages", nargs=-1)
@with_run_options
def web(pages: tuple[str, ...], once: bool, every: str) -> None:
    """Images of web PAGES: og:image, images in the article (default: MISINFO_WEB_PAGES)."""
    from ingest.collectors.web import WebCollector

    settings = load_settings()
    urls = list(pages) or split_list(settings.web_pages)
    if not urls:
        raise click.UsageError("name page URLs, or set MISINFO_WEB_PAGES")
    collector = WebCollector(**collector_kwargs(settings, "web", "default"), pages=urls)
    run_collector(collector, once, every)
