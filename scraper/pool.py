"""The parse processes: their life (start, warm-up, restart, shutdown) and their OS plumbing.

The engine is given a `ParsePool` and uses three calls: `start()` (blocking: run it
off the event loop), `await parse(jobs)` and `close()` (blocking). It never sees
the executor, the fork server or a broken pool.

Why the pool is built the way it is:

* **Its own fork server.** Workers are forked from a small server process that has
  imported lxml, bs4 and the parser once, so a new worker costs a fork, not an
  interpreter start. The server is this module's, not `multiprocessing`'s global
  one: it is started with the first pool, shared by every pool of the process, and
  stopped (killed and reaped: it holds nothing to save) when the last one closes,
  so when a run ends no process it started is left alive. The resource tracker that `multiprocessing` starts for the
  pool's semaphores is stopped with it when the pool started it.
* **The user's main module stays in the main process.** `multiprocessing` tells each
  new process to import the parent's `__main__` (a script's path or a `-m` module)
  so that functions defined there can be unpickled; a script without an
  `if __name__ == "__main__":` guard then runs its crawl again in every worker. Our
  processes get the parent's `sys.path` and working directory but never its main
  module: nothing they run needs it, because
* **`extract` travels by value.** The `Parser` (and the user's `extract` in it) is
  serialised with cloudpickle once, in the main process: a function from a notebook
  cell or a script, a closure or a lambda arrives whole, with the globals it uses;
  a function of an importable module arrives by reference and is imported.
  `check_sendable` says at construction when a callable cannot be sent.
* **Workers leave signals to the main process** (Ctrl-C reaches the whole process
  group; the main process decides), die with it even when it is killed (PDEATHSIG
  for the fork server's death, a pidfd for the main process's: a worker is the
  fork server's child, not the scraper's), and run at a lower priority: a parse
  backlog may wait, requests in flight must not.
* **A worker that dies** (a segfault in a C parser, the OOM killer) breaks the
  executor: that batch's pages get a `parse` error, and the next batch gets a new
  executor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import io
import os
import pickle
import signal
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import context, forkserver, popen_forkserver, resource_tracker, spawn, util
from typing import Any

import cloudpickle

from .errors import ConfigError
from .parse import Parsed, ParseJob, Parser, parse_failure

__all__ = ["ParsePool", "check_sendable"]

#: what the fork server imports once, before it forks any worker
PRELOAD = ["scraper.pool", "scraper.parse", "cloudpickle", "bs4", "lxml.etree", "yarl"]


def check_sendable(fn: Callable[..., Any], what: str = "extract") -> None:
    """Raise ConfigError, naming `fn`, when it cannot be sent to the parse processes.

    A callable that holds a lock, an open file or socket, or a generator fails here,
    at construction, rather than in the middle of a crawl.
    """
    if not callable(fn):
        raise TypeError(f"{what} must be a function {what}(soup, page) -> dict, not {type(fn).__name__}")
    try:
        cloudpickle.dumps(fn)
    except Exception as e:
        raise ConfigError(
            f"{what}={_name(fn)} cannot be sent to the parse processes: {e} "
            "(it, or a global or closure variable it uses, holds something that cannot be copied, "
            "such as a lock, an open file or a socket)"
        ) from None


def _name(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    code = getattr(fn, "__code__", None)
    if code is not None:
        return f"{name} ({code.co_filename}:{code.co_firstlineno})"
    return name


class ParsePool:
    """`workers` parse processes running `parser`; see the module docstring."""

    def __init__(self, parser: Parser, workers: int) -> None:
        self.workers = workers
        self._payload = cloudpickle.dumps(parser)
        self._extract = parser.extract
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._retired: list[concurrent.futures.ProcessPoolExecutor] = []  # broken ones, shut down at close
        self._joined = False  # whether this pool holds a share of the fork server
        self._closed = False

    def _current(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the parse pool is closed")
            if self._executor is None:
                if not self._joined:
                    _server.join()
                    self._joined = True
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=_Context(),
                    initializer=_init_worker,
                    initargs=(self._payload, os.getpid()),
                )
            return self._executor

    def start(self) -> None:
        """Start the fork server and the workers, and wait until each is ready (blocking).

        Run it off the event loop: starting the fork server imports lxml and bs4
        (~0.3 s), which would stall every request in flight. A worker that cannot
        load the `extract` function (its module does not import there) is a
        ConfigError, raised here.
        """
        try:
            executor = self._current()
            done = [executor.submit(_ready) for _ in range(self.workers)]
        except RuntimeError:
            if self._closed:  # the run ended (nothing to parse) before the workers were up: nothing to start
                return
            raise
        try:
            errors = {f.result() for f in done} - {None}
        except (BrokenProcessPool, concurrent.futures.CancelledError):
            errors = set()  # the next batch gets a new executor; or the pool was closed meanwhile
        if errors:
            raise ConfigError(f"extract={_name(self._extract)} cannot be loaded in the parse processes: "
                              f"{sorted(errors)[0]}")

    async def parse(self, jobs: list[ParseJob]) -> list[Parsed]:
        """Parse `jobs`, spread over the workers; one result per job, in order.

        When a worker dies on the batch, its pages get a `parse` error and the
        next call starts a new executor.
        """
        if not jobs:
            return []
        loop = asyncio.get_running_loop()
        executor = self._current()
        n = min(self.workers, len(jobs))
        chunks = [list(range(i, len(jobs), n)) for i in range(n)]
        try:
            results = await asyncio.gather(
                *(loop.run_in_executor(executor, _parse_chunk, [jobs[i] for i in chunk]) for chunk in chunks)
            )
        except BrokenProcessPool:
            self._retire(executor)
            return [parse_failure("the parse worker died on this batch") for _ in jobs]
        outputs: list[Any] = [None] * len(jobs)
        for chunk, chunk_results in zip(chunks, results, strict=True):
            for i, out in zip(chunk, chunk_results, strict=True):
                outputs[i] = out
        return outputs

    def _retire(self, executor: concurrent.futures.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:  # several batches may find it broken; one replaces it
                self._executor = None
                self._retired.append(executor)
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers and wait for them (blocking); the last pool also stops the fork server."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executors = [*self._retired, *([self._executor] if self._executor is not None else [])]
            self._executor = None
            self._retired.clear()
        for executor in executors:
            executor.shutdown(wait=True, cancel_futures=True)
        del executors
        if self._joined:
            self._joined = False
            _server.leave()

    def kill(self) -> None:
        """End the workers and the fork server at once (a second Ctrl-C): no waiting for a batch."""
        with self._lock:
            executors = [*self._retired, *([self._executor] if self._executor is not None else [])]
        for executor in executors:
            for proc in list((getattr(executor, "_processes", None) or {}).values()):
                proc.kill()
        _server.kill()


# --- the fork server, shared by the pools of this process ----------------------------------------


class _Server:
    """One fork server for every pool of this process: started with the first, stopped with the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self.server: forkserver.ForkServer | None = None
        self._own_tracker = False

    def join(self) -> None:
        with self._lock:
            self._users += 1
            if self.server is None:
                # the resource tracker is process-wide: stopped at the end only if this pool started it
                self._own_tracker = resource_tracker._resource_tracker._fd is None
                self.server = forkserver.ForkServer()
                self.server.set_forkserver_preload(PRELOAD)

    def leave(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0 or self.server is None:
                return
            server, self.server = self.server, None
            self._end(server)
            if self._own_tracker:
                # the pool's semaphores must be gone first: each unregisters itself when collected,
                # and a message to a stopped tracker would start a new one
                gc.collect()
                resource_tracker._resource_tracker._stop()

    @staticmethod
    def _end(server: forkserver.ForkServer) -> None:
        """Stop the fork server and reap it.

        Killed, not asked to exit: it holds nothing to save, and a Python process that
        imported lxml and bs4 takes seconds to shut itself down on a busy machine.
        """
        pid = server._forkserver_pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        server._stop()  # closes its "alive" pipe, reaps it, removes its socket file

    def kill(self) -> None:
        with self._lock:
            server, self.server = self.server, None
            if server is not None:
                self._end(server)

    def connect(self, fds: list[int]) -> tuple[int, int]:
        server = self.server
        if server is None:
            raise RuntimeError("the parse pool's fork server is stopped")
        return server.connect_to_new_process(fds)


_server = _Server()


class _Popen(popen_forkserver.Popen):
    """The standard forkserver Popen, with our fork server and without the main module.

    `_launch` is the standard library's, with two changes marked below.
    """

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        # change 1: the worker never imports the user's __main__ (a script or a -m module)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            context.reduction.dump(prep_data, buf)
            context.reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        self.sentinel, w = _server.connect(self._fds)  # change 2: our fork server
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _Process(context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)


class _Context(context.ForkServerContext):
    Process = _Process  # type: ignore[assignment]


# --- in the worker processes --------------------------------------------------------------------

_parser: Parser | None = None
_init_error: str | None = None


def _init_worker(payload: bytes, main_pid: int) -> None:
    """Process-pool initializer: leave signals to the main process, die with it, load the Parser."""
    global _parser, _init_error
    # Ctrl-C reaches the whole process group; the main process decides what happens
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    _exit_with(main_pid)
    # the event loop comes first: a parse backlog waits, requests in flight must not
    try:
        os.nice(5)
    except OSError:
        pass
    try:
        _parser = pickle.loads(payload)
    except Exception as e:  # said once by start(), in the main process; not a traceback per worker
        _init_error = f"{type(e).__name__}: {e}"


def _ready() -> str | None:
    return _init_error


def _parse_chunk(jobs: list[ParseJob]) -> list[Parsed]:
    """Parse several pages in one round trip to a worker."""
    if _parser is None:
        return [parse_failure(f"the parse worker could not load its parser: {_init_error}") for _ in jobs]
    return [_parser.parse(job) for job in jobs]


def _exit_with(pid: int) -> None:
    """End this worker when process `pid` (the scraper) dies, even by SIGKILL.

    A worker is a child of the fork server, not of the scraper, so PDEATHSIG does not
    see the scraper die; and the fork server lives on as long as any worker does.
    """
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(0)  # gone already
    except (AttributeError, OSError):  # not Linux >= 5.3: nothing to wait on
        return

    def wait() -> None:
        select.select([fd], [], [])  # readable once the process has exited
        os._exit(0)

    threading.Thread(target=wait, name="scraper.exit-with-main", daemon=True).start()


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent (the fork server) dies, even by SIGKILL."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: orphans are reaped by the pool's own checks
        pass
