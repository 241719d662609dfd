"""The near-duplicate index: pigeonhole bands find every hash within the bound (no false negatives)."""

from __future__ import annotations

import random

import pytest

from ingest.dedup import Dedup, bands, hamming


class FakeRedis:
    """Just the set/string commands Dedup uses, in memory."""

    def __init__(self) -> None:
        self.sets: dict[str, set[bytes]] = {}
        self.strings: dict[str, bytes] = {}

    def pipeline(self) -> FakePipe:
        return FakePipe(self)

    def exists(self, key: str) -> int:
        return int(key in self.strings)


class FakePipe:
    def __init__(self, r: FakeRedis) -> None:
        self.r, self.ops = r, []

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return lambda *a: self.ops.append((name, a))

    def execute(self) -> list[object]:
        out: list[object] = []
        for name, a in self.ops:
            if name == "sadd":
                self.r.sets.setdefault(a[0], set()).add(a[1].encode())
                out.append(1)
            elif name == "smembers":
                out.append(set(self.r.sets.get(a[0], set())))
            elif name == "scard":
                out.append(len(self.r.sets.get(a[0], set())))
            elif name == "set":
                self.r.strings[a[0]] = b"1"
                out.append(True)
        return out


def test_bands_cover_all_bits():
    for d in (0, 3, 4, 7, 15):
        parts = bands("f0e1d2c3b4a59687", d)
        assert len(parts) == d + 1
        widths = [(64 // (d + 1)) + (1 if i < 64 % (d + 1) else 0) for i in range(d + 1)]
        rebuilt = 0
        for (_, value), width in zip(parts, widths, strict=True):
            rebuilt = (rebuilt << width) | value
        assert rebuilt == 0xF0E1D2C3B4A59687


@pytest.mark.parametrize("distance", [2, 4, 6])
def test_every_hash_within_the_bound_is_found_and_none_beyond(distance):
    rng = random.Random(distance)
    d = Dedup(FakeRedis(), "t", near_distance=distance)
    base = rng.getrandbits(64)
    d.mark_published("a" * 64, f"{base:016x}")
    for _ in range(200):
        flips = rng.randint(1, distance + 3)
        other = base
        for bit in rng.sample(range(64), flips):
            other ^= 1 << bit
        found = d.find_near_duplicate(f"{other:016x}", "b" * 64)
        if flips <= distance:
            assert found == (flips, "a" * 64)
        else:
            assert found is None


def test_closest_wins_and_self_is_ignored_and_off_switch():
    d = Dedup(FakeRedis(), "t", near_distance=4)
    d.mark_published("a" * 64, "0000000000000000")
    d.mark_published("b" * 64, "0000000000000003")
    assert d.find_near_duplicate("0000000000000001", "c" * 64) == (1, "a" * 64)
    assert d.find_near_duplicate("0000000000000000", "a" * 64) == (2, "b" * 64)
    assert Dedup(FakeRedis(), "t", near_distance=-1).find_near_duplicate("0" * 16, "x") is None
    assert hamming("ff", "0f") == 4


def test_sightings_and_published_marks():
    d = Dedup(FakeRedis(), "p")
    assert d.record_sighting("i", "reddit", "t3_a") == 1
    assert d.record_sighting("i", "reddit", "t3_a") == 1
    assert d.record_sighting("i", "x", "9") == 2
    assert d.sightings_key("i") == "p:sightings:i"
    assert not d.is_published("i")
    d.mark_published("i")
    assert d.is_published("i")


class FlakyRedis(FakeRedis):
    """Refuses connections ``down`` times (a Redis restarting), then answers."""

    def __init__(self, down: int) -> None:
        super().__init__()
        self.down = down

    def exists(self, key: str) -> int:
        import redis

        if self.down:
            self.down -= 1
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return super().exists(key)


def test_a_redis_restart_is_waited_out_and_a_long_outage_is_one_clear_error():
    from ingest.exceptions import StoreUnavailable

    waits: list[float] = []
    d = Dedup(FlakyRedis(down=3), "p", sleep=waits.append)
    assert d.is_published("x") is False
    assert waits == [0.2, 0.4, 0.8]  # backed off, then answered

    gone = Dedup(FlakyRedis(down=10**6), "p", patience_s=0.0, sleep=waits.append)
    with pytest.raises(StoreUnavailable, match="Redis did not answer .* MISINFO_REDIS_URL"):
        gone.is_published("x")
