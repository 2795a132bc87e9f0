"""Short garbage-collector pauses in processes that answer while they work.

CPython's full (generation 2) collection walks every tracked object and holds the
interpreter lock meanwhile: in the API process, about 190,000 objects after start-up
(modules, routes, the ORM's and pydantic's tables), 0.13-0.18 s of CPU and up to 2.2 s
of wall time on a loaded 2-core machine. Every request in flight waits that long, and
on SQLite a scan holding the write lock makes every other writer wait too: the trace
of scan-in during a large import found these pauses in its slowest scans
(docs/benchmarks.md, "Where the tail came from"). Objects that live as long as the
process need not be walked: ``gc.freeze`` moves them to a generation no collection
visits, and a full collection then walks only what was made since (milliseconds).

A one-shot child (an import's, ``core.child``) goes further: it makes no automatic full
collection at all (``no_automatic_full_collections``). Its plan of 100,000 rows is built
object by object, and each full pass walked what had been built so far: 46 passes on
PostgreSQL, 2.9 s of CPU on a quiet machine, 18.9 s under load, taken from the scans'
cores (docs/benchmarks.md). Cyclic garbage that outlives the young generations then
stays until the child exits, minutes later at most.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

_frozen = False
_lock = threading.Lock()


def freeze_long_lived(*, again: bool = False, warm: Callable[[], object] | None = None) -> None:
    """Collect the garbage there is, then freeze what is alive: later collections skip
    it (it is still freed by reference counting; a cycle among frozen objects would
    only be reclaimed at exit). Once per process unless ``again`` (a one-shot child
    that has just built a large structure it keeps to the end); ``warm`` is called
    first when it does (a cache built lazily that would otherwise be built later)."""
    global _frozen
    with _lock:
        if _frozen and not again:
            return
        if warm is not None:
            warm()
        gc.collect()
        gc.freeze()
        _frozen = True


ONE_SHOT_GEN2_THRESHOLD = 1_000_000
"""The generation-2 threshold of a one-shot process: a full collection would come after
this many generation-1 collections (about 7 billion allocations): never, in its life.
(Python's default is 10.)"""


def no_automatic_full_collections() -> None:
    """For a process that ends when its one job does: the young generations are still
    collected as usual, full passes only when asked for (``gc.collect()``, as
    ``freeze_long_lived`` does). Never in a long-lived process: what it would keep grows
    with its life."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, ONE_SHOT_GEN2_THRESHOLD)
