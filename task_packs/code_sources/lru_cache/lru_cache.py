"""A least-recently-used cache with a fixed capacity and hit/miss counters."""

from collections import OrderedDict
from typing import Any


class LRUCache:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"LRUCache(capacity={self.capacity}, keys={self.keys()})"

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[Any]:
        """Keys from least to most recently used."""
        return list(self._items)

    def get(self, key: Any, default: Any = None) -> Any:
        if key not in self._items:
            self.misses += 1
            return default
        self.hits += 1
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        if key in self._items:
            self._items.move_to_end(key)
        self._items[key] = value
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0
