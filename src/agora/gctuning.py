"""Garbage-collector settings for a long-running server process (applied by the lifespan).

CPython's cyclic collector runs a young-generation pass every 700 net allocations of
container objects. In a server with requests in flight those allocations are mostly the
live objects of the requests themselves (not garbage), so the collector keeps scanning them,
promotes them, and about once a second runs a *full* collection that walks the whole heap:
every SQLAlchemy mapper, Pydantic schema, FastAPI route and imported module, ~90 ms per pass
on the benchmark machine. Measured under `wrk` with 32 connections on `GET /users/{id}`
(bench/README.md, "Third round"): the collector took 11-15% of the server's CPU, and its
full passes were the p99 (S1: 43-51 ms with these settings, 123-126 ms without).

Two standard remedies, both on by default and both settings:

- `gc.freeze()` once startup is done (`AGORA_GC_FREEZE`): everything alive then (the
  imported code, the app, its routes and schemas) moves to a permanent generation that
  collections skip. Those objects are still freed by reference counting if they ever become
  unreferenced; only a reference cycle among them (startup's own cyclic leftovers included)
  waits for shutdown to be collected.
- a young-generation threshold of 10,000 instead of 700 (`AGORA_GC_THRESHOLD`; 0 keeps
  Python's): requests in flight no longer trigger passes on their own; real cyclic garbage
  still does, 10,000 objects at a time (a few megabytes at most).

Shutting down undoes both, so an embedding process (or a test run creating many apps) gets
its collector back as it was. Overlapping lifespans in one process are counted: the first
applies the settings, the last restores them.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_users = 0
_saved: tuple[int, int, int] | None = None
_froze = False


@contextmanager
def tuned_gc(*, freeze: bool, threshold: int) -> Iterator[None]:
    """Freeze the heap and/or raise the young-generation threshold for the block's duration."""
    global _users, _saved, _froze
    with _lock:
        _users += 1
        if _users == 1:
            _saved = gc.get_threshold()
            if threshold:
                gc.set_threshold(threshold, *_saved[1:])
            if freeze:
                # No gc.collect() first: it would walk the whole heap (seconds in a big test
                # process) to spare the few cyclic leftovers of startup, which unfreeze()
                # hands back to the collector at shutdown anyway.
                gc.freeze()
                _froze = True
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                if _froze:
                    gc.unfreeze()
                    _froze = False
                if _saved is not None:
                    gc.set_threshold(*_saved)
                    _saved = None
