"""Engines run units of work; they never decide what the units are (DESIGN.md: engines, not rewrites).

A unit is what a command already resumes by: an ingest part, a split's shards, a video. Each unit
writes its own output atomically (temp name, then rename, or one PUT on an object store), so any
engine that runs every unit gives the same bytes, and a re-run after a kill skips what a unit
finished whichever engine ran it. ``Engine.map(fn, args)`` calls ``fn(*a)`` for each ``a`` and yields
the results **in the order of ``args``** as they become ready.

- ``local`` (the default, no extra): a thread pool (pyarrow, numpy and MediaPipe release the GIL)
  or a process pool, as each command ran before engines existed; four units per worker are submitted
  ahead, so units may stream from a plan larger than memory.
- ``ray`` (``pip install sltdata[ray]``): one Ray task per unit on a Ray cluster; ``address`` joins a
  running one (``ray start --head`` / KubeRay), else a local one is started with ``num_cpus``. At most
  ``window`` units are in flight, so the driver's memory does not grow with the number of units.
  Units that write to an object store put their files themselves: the driver's staging directories
  (``sltdata.fs.output_dir``) are installed in each worker.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Protocol

from sltdata import fs
from sltdata.errors import ConfigError

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


class Engine(Protocol):
    name: str

    def map(self, fn: Callable[..., Any], args: Iterable[tuple]) -> Iterator[Any]:
        """``fn(*a)`` for each ``a`` in ``args``, results yielded in the order of ``args``."""


class LocalEngine:
    """Threads (or processes) of this machine: what every command did before engines existed."""

    name = "local"

    def __init__(self, workers: int = 2, processes: bool = False, executor: Callable[[int], Executor] | None = None):
        self.workers = max(1, workers)
        self.executor = executor or (ProcessPoolExecutor if processes else ThreadPoolExecutor)

    def map(self, fn, args):
        window = 4 * self.workers  # units submitted ahead: enough to keep the workers busy, few enough
        # that the driver never holds every unit's arguments (an ingest's parts stream from its plan)
        with self.executor(max_workers=self.workers) as pool:
            pending: deque = deque()
            for a in args:
                pending.append(pool.submit(fn, *a))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def _call(fn, a, state):
    fs.install(state)
    return fn(*a)


class RayEngine:
    """Ray tasks, one per unit, ``window`` in flight; results in order."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, window: int | None = None):
        try:
            import ray
        except ImportError:
            raise ConfigError("--engine ray needs Ray: pip install 'sltdata[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False, include_dashboard=False)
            else:
                ray.init(num_cpus=num_cpus, log_to_driver=False, include_dashboard=False)
        self.window = window or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        self._task = ray.remote(_call)

    def map(self, fn, args):
        state = fs.mirrors()
        fn_ref = self.ray.put(fn)  # shipped once, not once per unit
        pending: deque = deque()
        for a in args:
            pending.append(self._task.remote(fn_ref, a, state))
            if len(pending) >= self.window:
                yield self.ray.get(pending.popleft())
        while pending:
            yield self.ray.get(pending.popleft())


def get_engine(name: str = "local", *, workers: int = 2, processes: bool = False, ray_address: str | None = None,
               executor: Callable[[int], Executor] | None = None) -> Engine:
    """The engine ``name`` (``--engine``); the local one takes ``workers``, Ray a cluster ``ray_address``
    (a local cluster of ``workers`` CPUs when none is given)."""
    if name == "local":
        if ray_address:
            raise ConfigError("--ray-address needs --engine ray")
        return LocalEngine(workers, processes, executor)
    if name == "ray":
        return RayEngine(ray_address, num_cpus=None if ray_address else max(1, workers))
    raise ConfigError(f"--engine {name!r}: expected one of {', '.join(ENGINES)}")
