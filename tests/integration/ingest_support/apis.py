"""Local stand-ins for the sources' HTTP APIs, shaped like the real responses (field names, paging,
auth, errors), serving images from the same server. Each ``install_*`` registers routes on a
:class:`LocalServer` and returns what the test needs to know."""

from __future__ import annotations

from typing import Any

from tests.integration.ingest_support import images
from tests.integration.ingest_support.server import LocalServer, Reply, Request

REDDIT_TOKEN = "reddit-access-token"
X_TOKEN = "x-bearer-token"
IG_TOKEN = "ig-access-token"


def serve_images(srv: LocalServer, names_seeds: dict[str, int]) -> dict[str, str]:
    """``{name: seed}`` -> ``{name: url}``: distinct JPEGs on the server."""
    return {
        name: srv.route(
            f"/media/{name}",
            Reply(200, images.jpeg(seed, (200 + seed % 7 * 16, 160)), content_type="image/jpeg"),
        )
        for name, seed in names_seeds.items()
    }


def _authorized(req: Request, token: str) -> bool:
    return req.headers.get("authorization") == f"Bearer {token}"


# --- Reddit (OAuth token endpoint + listings, as praw reads them) ----------------------------------------


def reddit_post(post_id: str, title: str, **data: Any) -> dict[str, Any]:
    return {
        "kind": "t3",
        "data": {
            "id": post_id,
            "name": f"t3_{post_id}",
            "title": title,
            "author": "poster",
            "subreddit": "pics",
            "permalink": f"/r/pics/comments/{post_id}/x/",
            "created_utc": 1_760_000_000.0,
            "is_gallery": False,
            **data,
        },
    }


def install_reddit(srv: LocalServer, listings: dict[str, list[dict[str, Any]]]) -> None:
    """``listings``: ``{"/r/pics/new": [post, ...]}``, served in pages of 2 with ``after``."""

    def token(req: Request) -> Reply:
        if req.method != "POST" or "client_credentials" not in req.body.decode():
            return Reply.json({"error": "unsupported_grant_type"}, 400)
        return Reply.json(
            {"access_token": REDDIT_TOKEN, "token_type": "bearer", "expires_in": 3600, "scope": "*"}
        )

    srv.route("/api/v1/access_token", token)

    def listing(posts: list[dict[str, Any]]) -> Any:
        def handle(req: Request) -> Reply:
            if req.headers.get("authorization") != f"bearer {REDDIT_TOKEN}":
                return Reply.json({"message": "Unauthorized", "error": 401}, 401)
            start = 0
            after = req.arg("after")
            if after:
                start = next(i for i, p in enumerate(posts) if p["data"]["name"] == after) + 1
            page = posts[start : start + 2]
            more = start + 2 < len(posts)
            return Reply.json(
                {
                    "kind": "Listing",
                    "data": {
                        "after": page[-1]["data"]["name"] if more and page else None,
                        "before": None,
                        "dist": len(page),
                        "children": page,
                    },
                },
                **{"x-ratelimit-remaining": "500", "x-ratelimit-used": "1", "x-ratelimit-reset": "300"},
            )

        return handle

    for path, posts in listings.items():
        srv.route(path, listing(posts))


# --- X API v2 --------------------------------------------------------------------------------------------


def install_x(srv: LocalServer, urls: dict[str, str], rate_limit_first: bool = False) -> dict[str, int]:
    """Recent search (two pages via next_token) and alice's timeline (pagination_token); with
    ``since_id`` only tweets newer than it. The first search call answers 429 when asked."""
    tweets = [  # newest first, as the API lists them
        {
            "id": "1900000000000000005",
            "text": "five",
            "author_id": "42",
            "created_at": "2026-10-01T10:05:00.000Z",
            "attachments": {"media_keys": ["3_5"]},
        },
        {
            "id": "1900000000000000004",
            "text": "four (video)",
            "author_id": "43",
            "created_at": "2026-10-01T10:04:00.000Z",
            "attachments": {"media_keys": ["7_4"]},
        },
        {
            "id": "1900000000000000003",
            "text": "no media",
            "author_id": "42",
            "created_at": "2026-10-01T10:03:00.000Z",
        },
        {
            "id": "1900000000000000002",
            "text": "two photos",
            "author_id": "43",
            "created_at": "2026-10-01T10:02:00.000Z",
            "attachments": {"media_keys": ["3_2a", "3_2b"]},
        },
    ]
    media = [
        {"media_key": "3_5", "type": "photo", "url": urls["x5"]},
        {"media_key": "7_4", "type": "video", "preview_image_url": urls["x4"]},
        {"media_key": "3_2a", "type": "photo", "url": urls["x2a"]},
        {"media_key": "3_2b", "type": "photo", "url": urls["x2b"]},
    ]
    users = [{"id": "42", "username": "alice"}, {"id": "43", "username": "bob"}]
    state = {"search_calls": 0, "rate_limited": 0}

    def page(req: Request, pool: list[dict[str, Any]], token_param: str) -> Reply:
        since = req.arg("since_id")
        pool = [t for t in pool if not since or int(t["id"]) > int(since)]
        start = int(req.arg(token_param) or 0)
        chunk = pool[start : start + 2]
        meta: dict[str, Any] = {"result_count": len(chunk)}
        if chunk:
            meta |= {"newest_id": chunk[0]["id"], "oldest_id": chunk[-1]["id"]}
        if start + 2 < len(pool):
            meta["next_token"] = str(start + 2)
        keys = {k for t in chunk for k in (t.get("attachments") or {}).get("media_keys", [])}
        doc: dict[str, Any] = {"meta": meta}
        if chunk:
            doc["data"] = chunk
            doc["includes"] = {"media": [m for m in media if m["media_key"] in keys], "users": users}
        return Reply.json(doc)

    def search(req: Request) -> Reply:
        if not _authorized(req, X_TOKEN):
            return Reply.json({"title": "Unauthorized", "status": 401}, 401)
        state["search_calls"] += 1
        if rate_limit_first and state["rate_limited"] == 0:
            state["rate_limited"] += 1
            return Reply.json({"title": "Too Many Requests", "status": 429}, 429, **{"Retry-After": "2"})
        assert "attachments.media_keys" in (req.arg("expansions") or "")
        return page(req, tweets, "next_token")

    def user(req: Request) -> Reply:
        return Reply.json({"data": {"id": "42", "name": "Alice", "username": "alice"}})

    def timeline(req: Request) -> Reply:
        if not _authorized(req, X_TOKEN):
            return Reply.json({"title": "Unauthorized", "status": 401}, 401)
        return page(req, [t for t in tweets if t["author_id"] == "42"], "pagination_token")

    srv.route("/2/tweets/search/recent", search)
    srv.route("/2/users/by/username/alice", user)
    srv.route("/2/users/42/tweets", timeline)
    return state


# --- Instagram Graph API ---------------------------------------------------------------------------------


def install_instagram(srv: LocalServer, urls: dict[str, str], version: str = "v21.0") -> None:
    def graph(handler: Any) -> Any:
        def wrapped(req: Request) -> Reply:
            if not _authorized(req, IG_TOKEN):
                return Reply.json(
                    {
                        "error": {
                            "message": "Invalid OAuth access token.",
                            "type": "OAuthException",
                            "code": 190,
                        }
                    },
                    400,
                )
            return handler(req)

        return wrapped

    hashtag_media = [
        {
            "id": "h3",
            "media_type": "IMAGE",
            "media_url": urls["h3"],
            "caption": "#cats three",
            "permalink": "https://www.instagram.com/p/h3/",
            "timestamp": "2026-10-01T10:03:00+0000",
        },
        {
            "id": "h2",
            "media_type": "CAROUSEL_ALBUM",
            "caption": "#cats album",
            "permalink": "https://www.instagram.com/p/h2/",
            "timestamp": "2026-10-01T10:02:00+0000",
            "children": {
                "data": [
                    {"id": "c1", "media_type": "IMAGE", "media_url": urls["c1"]},
                    {"id": "c2", "media_type": "VIDEO", "thumbnail_url": urls["c2"]},
                ]
            },
        },
        {
            "id": "h1",
            "media_type": "IMAGE",
            "media_url": urls["h1"],
            "caption": "#cats one",
            "permalink": "https://www.instagram.com/p/h1/",
            "timestamp": "2026-10-01T10:01:00+0000",
        },
    ]
    account_media = [
        {
            "id": "a1",
            "media_type": "VIDEO",
            "thumbnail_url": urls["a1"],
            "media_url": "https://video.example/a1.mp4",
            "caption": "reel",
            "username": "newsroom",
            "permalink": "https://www.instagram.com/p/a1/",
            "timestamp": "2026-10-01T09:00:00+0000",
        },
    ]

    def paged(pool: list[dict[str, Any]], path: str) -> Any:
        def handle(req: Request) -> Reply:
            start = int(req.arg("after") or 0)
            size = int(req.arg("limit") or 25)
            size = min(size, 2)  # small pages, so paging is exercised
            chunk = pool[start : start + size]
            doc: dict[str, Any] = {
                "data": chunk,
                "paging": {"cursors": {"before": str(start), "after": str(start + size)}},
            }
            if start + size < len(pool):
                doc["paging"]["next"] = f"https://graph.facebook.com/{version}{path}?after={start + size}"
            return Reply.json(doc)

        return graph(handle)

    srv.route(
        f"/{version}/ig_hashtag_search",
        graph(
            lambda req: (
                Reply.json({"data": [{"id": "17843"}]})
                if req.arg("q") == "cats"
                else Reply.json({"data": []})
            )
        ),
    )
    srv.route(f"/{version}/17843/recent_media", paged(hashtag_media, "/17843/recent_media"))
    srv.route(f"/{version}/17841/media", paged(account_media, "/17841/media"))
