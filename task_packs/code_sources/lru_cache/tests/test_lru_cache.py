import pytest

from lru_cache import LRUCache


def test_evicts_least_recently_used():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")
    cache.put("c", 3)
    assert cache.keys() == ["a", "c"]


def test_put_refreshes_recency():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert cache.keys() == ["a", "c"]
    assert cache.get("a") == 10


def test_size_stays_at_capacity():
    cache = LRUCache(3)
    for key in "abcde":
        cache.put(key, key.upper())
    assert len(cache) == 3
    assert cache.keys() == ["c", "d", "e"]


def test_miss_returns_default():
    cache = LRUCache(1)
    assert cache.get("missing", 0) == 0


def test_hit_rate():
    cache = LRUCache(2)
    assert cache.hit_rate() == 0.0
    cache.put("a", 1)
    cache.get("a")
    cache.get("a")
    cache.get("b")
    assert (cache.hits, cache.misses) == (2, 1)
    assert cache.hit_rate() == pytest.approx(2 / 3)


def test_rejects_zero_capacity():
    with pytest.raises(ValueError):
        LRUCache(0)
