"""The token cache trusts an entry only under the users epoch it was stored with."""

from __future__ import annotations

from moderation.auth import User
from moderation.token_cache import TokenCache

MIA = User("mia", "moderator", generation=3)


def test_an_entry_counts_only_under_its_own_epoch():
    cache = TokenCache()
    cache.put("d1", b"7", MIA)
    assert cache.get("d1", b"7") == MIA
    assert cache.get("d1", b"8") is None  # a user changed since: look it up again
    assert cache.get("d2", b"7") is None


def test_nothing_is_trusted_without_an_epoch():
    cache = TokenCache()
    cache.put("d1", None, MIA)
    assert cache.get("d1", None) is None


def test_a_full_cache_starts_over():
    cache = TokenCache(max_entries=2)
    cache.put("a", b"1", MIA)
    cache.put("b", b"1", MIA)
    cache.put("a", b"1", MIA)  # a refresh of a known entry keeps the others
    assert cache.get("b", b"1") == MIA
    cache.put("c", b"1", MIA)
    assert cache.get("a", b"1") is None and cache.get("c", b"1") == MIA
