"""A long-running process's startup heap kept out of the cyclic collector's full collections.

Its own module so that processes which must not import the API (the load benchmark's
fleet) freeze their heap as the services do."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


def freeze_startup_heap() -> None:
    """Keep what startup built (modules, the model, caches) out of the cyclic collector's
    full collections, which otherwise walk all of it: about 100,000 objects in the router,
    100-180 ms a collection, several a second under load, with every event waiting behind
    them; afterwards they walk only what was made since (1-7 ms). Called once a process has
    loaded what it keeps; garbage is collected first, or it would be kept for good."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def startup_heap_frozen() -> Iterator[None]:
    """The startup heap frozen while the services run, and let go on the way out: the
    interpreter's last collection then frees it (extension modules such as torch's count
    what was never freed and print it at exit)."""
    freeze_startup_heap()
    try:
        yield
    finally:
        gc.unfreeze()
