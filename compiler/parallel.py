"""Batches over threads: one process-wide pool, one way to split and wait.

Every batch function of the llvm back end has one interface (see
:mod:`compiler.llvmsimd` and :mod:`compiler.llvmbatch`)::

    void f(ptr ptrs, ptr strides, ptr out, i64 ostride, i64 lo, i64 hi)

and evaluates points ``lo .. hi-1``; ranges that do not overlap write
disjoint parts of ``out``. :func:`run_batch` splits ``0 .. n`` into one range
per thread, runs the first on the calling thread and the others on the pool
(``ctypes`` releases the GIL, so they run in parallel), and returns when all
are done.

Design points:

* **Interrupts.** A signal handler (Ctrl-C's ``KeyboardInterrupt``, an alarm)
  can raise in the calling thread while pool threads are still writing. The
  call waits for every range in a ``finally`` that keeps waiting through
  further interrupts, and only then lets the exception go on; each job also
  holds references to every buffer it touches, so no buffer can be freed
  under a running thread whatever happens to the caller.
* **Fork.** A forked child has none of its parent's threads; the pool is
  dropped in the child (``os.register_at_fork``) and a fresh one starts on
  its first batch. Nothing here uses OpenMP or Numba's threading layers.
* **Size.** Small batches run on the calling thread only: ``min_points``
  points per thread at least (the caller knows what a point costs), ranges
  aligned to ``align`` points (whole SIMD groups).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, Optional

__all__ = ["threads", "pool", "split", "run_batch", "MAX_THREADS"]

MAX_THREADS = 8
"""Threads a batch uses at most (the memory bandwidth is shared beyond that)."""

_STATE: dict = {}
_LOCK = threading.Lock()


def _forget_pool() -> None:      # in a forked child: the parent's threads do not exist here
    global _LOCK
    _STATE.pop("pool", None)
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def threads() -> int:
    """Threads a batch may use: the CPUs this process may run on, at most :data:`MAX_THREADS`."""
    try:
        return max(1, min(len(os.sched_getaffinity(0)), MAX_THREADS))
    except AttributeError:
        return max(1, min(os.cpu_count() or 1, MAX_THREADS))


def pool() -> ThreadPoolExecutor:
    """The process-wide pool batches run on (started on first use; ``threads() - 1``
    workers, the calling thread being the last)."""
    with _LOCK:
        if "pool" not in _STATE:
            _STATE["pool"] = ThreadPoolExecutor(max(threads() - 1, 1), thread_name_prefix="symgrad")
        return _STATE["pool"]


def split(n: int, parts: int, min_points: int = 1, align: int = 1) -> list:
    """Ranges ``[(lo, hi), ...]`` covering ``0 .. n``: at most ``parts`` of them, each
    at least ``min_points`` long (but one), starting at multiples of ``align``.

    Examples
    --------
    >>> split(10, 3)
    [(0, 4), (4, 8), (8, 10)]
    >>> split(100, 4, min_points=60)
    [(0, 100)]
    >>> split(20, 2, align=8)
    [(0, 16), (16, 20)]
    """
    if n <= 0:
        return [(0, max(n, 0))]
    parts = max(1, min(parts, n // max(min_points, 1)))
    step = -(-n // parts)
    step += -step % max(align, 1)
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def _job(fn: Callable, args: tuple, keep: tuple) -> None:  # noqa: ARG001 - keep: alive while fn runs
    fn(*args)


def run_batch(fn: Callable, ptrs, strides, out_address: int, ostride: int, n: int, *,
              keep: tuple = (), n_threads: Optional[int] = None, min_points: int = 1,
              align: int = 1) -> None:
    """Run the batch function ``fn`` over points ``0 .. n``, split over the pool.

    ``fn(ptrs, strides, out_address, ostride, lo, hi)`` is a ctypes function
    (it releases the GIL). ``keep`` holds every object whose memory ``fn``
    reads or writes (the output array, the callers' input arrays): the jobs
    keep them alive until they finish. Returns only when every range is done,
    even when an exception (a signal handler's) interrupts the wait.
    """
    parts = split(n, n_threads or threads(), min_points, align)
    if len(parts) == 1:
        fn(ptrs, strides, out_address, ostride, 0, max(n, 0))
        return
    keep = (ptrs, strides, *keep)
    futures: list = []
    interrupted = None
    try:
        workers = pool()
        for lo, hi in parts[1:]:
            futures.append(workers.submit(_job, fn, (ptrs, strides, out_address, ostride, lo, hi),
                                          keep))
        fn(ptrs, strides, out_address, ostride, *parts[0])
    finally:
        while True:                 # every range finishes before the caller may free anything
            try:
                wait(futures)
                break
            except BaseException as exc:  # noqa: BLE001 - re-raised once the threads are done
                interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted
    for f in futures:
        f.result()                  # a worker's own error (none expected from native code)
