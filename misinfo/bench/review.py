"""``misinfo bench review``: the review service under many moderators at once.

A stack of its own (broker, a Redis the stack starts) and a real `misinfo moderate` process on a
loopback port. The queue is seeded with flagged verdict records (written through the worker's own
sink, with real image blobs), an admin is created with `misinfo users add`, and the admin creates the
moderators and uploaders through the API, as an admin would. Then, from this process (an asyncio
client; the service runs in its own process), for at least ``--seconds`` and ``--min-requests``:

- ``--moderators`` (50) moderators, each in a loop: read a page of the queue, open an item, label it
  (a random class), and every fifth round read the stats;
- ``--uploaders`` (10) uploaders, each in a loop: upload a distinct JPEG.

Every response is timed per route. Afterwards the feedback topic is read from the start: every label
the service answered 200 for must be there exactly once (moderator, image), and nothing else.
One JSON line: requests, requests/s, errors by status, p50/p99 per route, labels answered and labels
lost or duplicated on the feedback topic, and ``dry_rounds``: moderator rounds that found nothing left
to label (the seed ran out, so the load was lighter than asked; the default seed is sized for the
service's ~300 requests/s).
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from core.config import Settings, load_settings
from misinfo.bench.support import emit, free_port, machine, own_stack, percentile, say, stop_on_sigterm
from misinfo.procs import run_misinfo, start_misinfo

LABELS = ("authentic", "manipulated", "synthesized")


async def seed(s: Settings, n: int) -> None:
    """``n`` flagged verdict records with real blobs: the queue the moderators work through."""
    import hashlib
    import io
    from datetime import UTC, datetime

    import redis.asyncio as aioredis

    from core.contracts.images import ImageEvent
    from core.contracts.verdicts import Verdict
    from ingest.blobs import open_blob_store
    from misinfo.samples import scene
    from stream_workers.sinks import RedisSink

    blobs = open_blob_store(s.blob_root)
    client = aioredis.Redis.from_url(s.redis_url)
    sink = RedisSink(client, s.redis_prefix)
    rng = random.Random(5)
    bases = []
    for i in range(20):
        buf = io.BytesIO()
        scene(900 + i).save(buf, "JPEG", quality=85)
        bases.append(buf.getvalue())
    pairs = []
    for i in range(n):
        data = _unique_jpeg(bases[i % len(bases)], f"review seed {i}")
        image_id = hashlib.sha256(data).hexdigest()
        now = datetime.now(UTC)
        event = ImageEvent(
            image_id=image_id,
            blob_uri=blobs.put(data),
            source="folder",
            source_item_id=f"seed-{i}",
            source_url=f"file:///seed/{i}.jpg",
            author=None,
            posted_at=None,
            collected_at=now,
            width=320,
            height=240,
            mime="image/jpeg",
            phash=f"{i:016x}",
            text=f"seed {i}",
        )
        fake = rng.uniform(0.5, 0.95)
        verdict = Verdict(
            image_id=image_id,
            label="manipulated",
            scores={"authentic": 1 - fake, "manipulated": fake * 0.6, "synthesized": fake * 0.4},
            model_name="bench",
            model_version="0",
            profile_id="default",
            latency_ms=1.0,
            flagged=True,
        )
        pairs.append((event, verdict))
        if len(pairs) == 200:
            await sink.write(pairs)
            pairs = []
    await sink.write(pairs)
    await client.aclose()


def _unique_jpeg(base: bytes, text: str) -> bytes:
    comment = text.encode()
    return base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]


@dataclass
class Reply:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Load:
    """The clients, their timings and the labels the service accepted. One aiohttp session in this
    process (cheaper per request than httpx: the client shares the machine's cores with the service);
    a request's time runs until its whole body is read."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: dict[str, list[float]] = defaultdict(list)
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.transport_errors: Counter[str] = Counter()
        self.labels: list[tuple[str, str]] = []  # (moderator, image_id) answered 200
        self.dry_rounds = 0  # rounds that found nothing left to label: the seed ran out
        self.requests = 0
        self.elapsed = 0.0

    async def call(self, client: Any, route: str, method: str, path: str, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            async with client.request(method, self.url + path, **kw) as raw:
                resp = Reply(raw.status, await raw.read())
        except Exception as exc:  # noqa: BLE001 - counted, never fatal for the run
            self.transport_errors[type(exc).__name__] += 1
            self.requests += 1
            return None
        self.times[route].append(time.perf_counter() - started)
        self.statuses[(route, resp.status_code)] += 1
        self.requests += 1
        return resp

    async def moderator(self, client: Any, name: str, token: str, until: Any, rng: random.Random) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        done: set[str] = set()
        rounds = 0
        while not until():
            rounds += 1
            resp = await self.call(
                client,
                "GET /api/queue",
                "GET",
                f"/api/queue?limit=25&offset={rng.randrange(0, 50)}",
                headers=headers,
            )
            if resp is None or resp.status_code != 200:
                await asyncio.sleep(0.1)
                continue
            entries = [e["image_id"] for e in resp.json()["entries"] if e["image_id"] not in done]
            if not entries:
                resp = await self.call(
                    client, "GET /api/queue", "GET", "/api/queue?limit=25", headers=headers
                )
                entries = [e["image_id"] for e in (resp.json()["entries"] if resp is not None else [])]
                entries = [e for e in entries if e not in done]
                if not entries:
                    self.dry_rounds += 1
                    await asyncio.sleep(0.2)
                    continue
            image_id = rng.choice(entries)
            await self.call(client, "GET /api/items/{id}", "GET", f"/api/items/{image_id}", headers=headers)
            resp = await self.call(
                client,
                "POST /api/items/{id}/label",
                "POST",
                f"/api/items/{image_id}/label",
                headers=headers,
                json={"label": rng.choice(LABELS), "note": "bench"},
            )
            if resp is not None and resp.status_code == 200:
                self.labels.append((name, image_id))
                done.add(image_id)
            if rounds % 5 == 0:
                await self.call(client, "GET /api/stats", "GET", "/api/stats", headers=headers)

    async def uploader(self, client: Any, name: str, token: str, until: Any, images: Any) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        import aiohttp

        while not until():
            form = aiohttp.FormData()
            form.add_field("file", images(), filename=f"{name}.jpg", content_type="image/jpeg")
            form.add_field("caption", f"bench upload by {name}")
            await self.call(client, "POST /api/uploads", "POST", "/api/uploads", headers=headers, data=form)


async def drive(
    url: str, admin_token: str, moderators: int, uploaders: int, seconds: float, min_requests: int
) -> Load:
    import io

    import aiohttp

    from misinfo.samples import scene

    load = Load(url)
    # Idle connections expire before the service's keep-alive timeout (uvicorn: 5 s), so the client
    # never sends on a connection the server is closing.
    connector = aiohttp.TCPConnector(limit=moderators + uploaders + 4, keepalive_timeout=4.0)
    timeout = aiohttp.ClientTimeout(total=60.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        admin = {"Authorization": f"Bearer {admin_token}"}

        async def create(name: str, role: str) -> str:
            async with client.post(
                f"{url}/api/users", headers=admin, json={"name": name, "role": role}
            ) as resp:
                body = await resp.read()
                if resp.status != 201:
                    raise click.ClickException(f"could not create {name}: HTTP {resp.status} {body[:200]!r}")
            return str(json.loads(body)["token"])

        mods = [
            (f"moderator-{i:02d}", await create(f"moderator-{i:02d}", "moderator")) for i in range(moderators)
        ]
        ups = [
            (f"uploader-{i:02d}", await create(f"uploader-{i:02d}", "moderator")) for i in range(uploaders)
        ]
        buf = io.BytesIO()
        scene(4242, (400, 300)).save(buf, "JPEG", quality=85)
        base, counter = buf.getvalue(), iter(range(10**9))

        def next_image() -> bytes:
            return _unique_jpeg(base, f"bench upload {next(counter)}")

        started = time.monotonic()

        def until() -> bool:
            return time.monotonic() - started >= seconds and load.requests >= min_requests

        say(
            f"{moderators} moderators and {uploaders} uploaders for at least {seconds:.0f} s / {min_requests} requests"
        )
        tasks = [load.moderator(client, n, t, until, random.Random(n)) for n, t in mods]
        tasks += [load.uploader(client, n, t, until, next_image) for n, t in ups]
        await asyncio.gather(*tasks)
        load.elapsed = time.monotonic() - started
    return load


def feedback_labels(s: Settings) -> Counter[tuple[str, str]]:
    from core.contracts.base import ContractError
    from core.contracts.verdicts import Label
    from core.kafka import replay_consumer

    out: Counter[tuple[str, str]] = Counter()
    for msg in replay_consumer(s.kafka_bootstrap, s.topic_feedback, idle_s=5):
        try:
            label = Label.parse(msg.value)
        except ContractError:
            continue
        out[(label.moderator_id, label.image_id)] += 1
    return out


def run_review(
    base: Settings, moderators: int, uploaders: int, seconds: float, min_requests: int, items: int, tmp: Path
) -> dict[str, Any]:
    import urllib.request

    with own_stack(base, tmp / "state") as (s, _stack):
        say(f"seeding {items} flagged items")
        asyncio.run(seed(s, items))
        out = run_misinfo(s, "users", "add", "bench-admin", "--role", "admin")
        if out.returncode != 0:
            raise click.ClickException(f"misinfo users add failed: {out.stderr[-500:]}")
        admin_token = out.stdout.strip().splitlines()[-1]
        port = free_port()
        server = start_misinfo(s, "moderate", "--port", str(port), log=tmp / "moderate.log")
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/api/openapi.json", timeout=2):  # noqa: S310
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise click.ClickException(
                            f"the review service did not start; see {tmp / 'moderate.log'}"
                        ) from None
                    time.sleep(0.2)
            load = asyncio.run(drive(url, admin_token, moderators, uploaders, seconds, min_requests))
            server_alive = server.poll() is None
        finally:
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=30)
        say("reading the feedback topic")
        on_topic = feedback_labels(s)
    answered = Counter(load.labels)
    lost = sum(1 for key in answered if on_topic.get(key, 0) == 0)
    duplicated = sum(max(0, n - 1) for n in on_topic.values())
    unexpected = sum(n for key, n in on_topic.items() if key not in answered)
    errors = {f"{route} {status}": n for (route, status), n in sorted(load.statuses.items()) if status >= 400}
    server_errors = sum(n for (_, status), n in load.statuses.items() if status >= 500)
    elapsed = load.elapsed
    return {
        "benchmark": "review",
        "moderators": moderators,
        "uploaders": uploaders,
        "seconds": round(elapsed, 1),
        "requests": load.requests,
        "requests_per_s": round(load.requests / elapsed, 1),
        "by_route": {
            route: {
                "requests": len(times),
                "p50_ms": round(1000 * percentile(times, 0.5), 1),
                "p99_ms": round(1000 * percentile(times, 0.99), 1),
            }
            for route, times in sorted(load.times.items())
        },
        "errors_by_status": errors,
        "server_errors": server_errors,
        "transport_errors": dict(load.transport_errors),
        "labels_answered": sum(answered.values()),
        "labels_on_topic": sum(on_topic.values()),
        "labels_lost": lost,
        "labels_duplicated": duplicated,
        "labels_unexpected": unexpected,
        "seeded_items": items,
        # > 0: the queue ran dry and moderators idled; the load was lighter than asked (seed more)
        "dry_rounds": load.dry_rounds,
        "server_alive": server_alive,
        "machine": machine(),
    }


@click.command("review")
@click.option("--moderators", default=50, show_default=True)
@click.option("--uploaders", default=10, show_default=True)
@click.option("--seconds", default=60.0, show_default=True, help="run at least this long ...")
@click.option("--min-requests", default=5000, show_default=True, help="... and at least this many requests")
@click.option(
    "--items",
    default=12000,
    show_default=True,
    help="flagged items seeded into the queue (enough that it does not run dry: see dry_rounds)",
)
def bench_review(moderators: int, uploaders: int, seconds: float, min_requests: int, items: int) -> None:
    """The review API under concurrent moderators and uploaders: latency per route, errors, labels
    lost or duplicated on the feedback topic (one JSON line)."""
    stop_on_sigterm()
    base = replace(load_settings(), train_trigger=False)
    tmp = tempfile.TemporaryDirectory(prefix="misinfo-review-")
    try:
        figures = run_review(base, moderators, uploaders, seconds, min_requests, items, Path(tmp.name))
        emit(figures)  # before the clean-up, which takes a while after a long run
    finally:
        tmp.cleanup()
