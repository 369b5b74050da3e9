"""A service process, once it has loaded what it keeps, takes its startup heap out of the
cyclic collector's full collections (which would otherwise walk all of it, stalling the
event loop for 100 ms or more), after collecting what is already garbage; on its way out it
lets the heap go again, for the interpreter's last collection to free."""

from __future__ import annotations

import gc
import weakref

from hybrid_agent.startup_heap import startup_heap_frozen


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_the_startup_heap_is_frozen_after_its_garbage_is_collected_and_let_go_at_the_end() -> None:
    kept, garbage = Node(), Node()
    garbage.other = Node()
    garbage.other.other = garbage   # a cycle: only the collector frees it
    gone = weakref.ref(garbage)
    del garbage
    with startup_heap_frozen():
        assert gone() is None
        assert gc.get_freeze_count() > 0
        assert not any(obj is kept for obj in gc.get_objects())   # out of the collector's generations
    assert gc.get_freeze_count() == 0
    assert any(obj is kept for obj in gc.get_objects())
