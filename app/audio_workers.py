"""Uploaded audio analysed in a few worker processes, each file under a time limit.

    >>> workers = AudioWorkers(processes=2, queue=4, timeout_s=60.0)
    >>> features = workers.run(analyse_audio, data, 30.0)   # (518,) float32, in a worker
    >>> workers.close()

Decoding and the constant-Q transform of one hostile file can take minutes and
gigabytes; in a worker process it can be stopped (the process is killed and a
fresh one takes its place) and its memory capped (RLIMIT_AS), and the server's
own threads never hold the samples. At most `processes` files are analysed at
once and at most `queue` more wait; past that `WorkersBusy` is raised at once,
so a burst of uploads queues briefly or is refused instead of exhausting memory.
Processes are spawned on first use (not forked: the server holds torch and FAISS
threads) and live until `close`; with `warm_up=True` they are all started at once in
the background and each runs the recipe on a synthetic tone before taking files, so
the first upload pays neither librosa's imports nor numba's compilation (11-16 s).
"""

from __future__ import annotations

import logging
import multiprocessing
import queue as queues
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("musicsim.audio")
# A worker's start (spawn, then importing librosa) is not charged to the first file's
# time limit; it has a generous limit of its own.
START_TIMEOUT_S = 300.0


class WorkersBusy(Exception):
    """Every worker is busy and the queue is full (or a queued file waited too long)."""


class AnalysisTimeout(Exception):
    """One file took longer than the time limit; its worker was killed."""


class AnalysisFailed(Exception):
    """The worker died analysing this file (e.g. it hit the memory limit)."""


class AnalysisRefused(Exception):
    """The analysis raised ValueError (undecodable audio, too short, ...); `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def analyse_audio(data: bytes, excerpt_seconds: float) -> Any:
    """(518,) FMA features of the middle excerpt of an encoded file (runs in a worker)."""
    from training.audio.recipe import AudioError, decode, extract_features

    try:
        signal, sr = decode(data, excerpt_seconds=excerpt_seconds)
    except AudioError as exc:
        raise ValueError(f"cannot decode audio: {exc.reason}") from None
    return extract_features(signal=signal, sr=sr)


def _serve(connection: Connection, memory_bytes: int, warm_up: bool = False) -> None:
    """A worker's loop: (function, args) in, ("ok", value) or (kind, message) out."""
    if memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    import training.audio.recipe  # noqa: F401  (librosa loads before any file's clock starts)

    if warm_up:  # numba's kernels compiled before any file's clock starts, too
        from training.audio.warmup import warm_up_recipe

        try:
            warm_up_recipe()
        except Exception:  # costs only speed: the first file compiles instead
            log.warning("audio warm-up failed in a worker", exc_info=True)

    connection.send(("ready", None))
    while True:
        try:
            function, args = connection.recv()
        except (EOFError, OSError):
            return
        try:
            answer: tuple[str, Any] = ("ok", function(*args))
        except MemoryError:
            answer = ("memory", "the analysis ran out of memory")
        except ValueError as exc:
            answer = ("refused", str(exc))
        except Exception as exc:  # reported to the server, which logs it; the worker lives on
            answer = ("error", f"{type(exc).__name__}: {exc}")
        connection.send(answer)


class _Slot:
    """One worker process (started when first needed) and its pipe."""

    def __init__(self, context, memory_bytes: int, warm_up: bool = False):
        self._context = context
        self._memory_bytes = memory_bytes
        self._warm_up = warm_up
        self._process = None
        self._connection: Connection | None = None
        self._ready = False  # the process has said "ready" (after its warm-up)
        # stop() runs from the pool's close() while a starting thread may stop the same
        # slot on its own failure: one at a time, or the pipe is closed twice (EBADF).
        self._stopping = threading.Lock()

    def run(self, function: Callable, args: tuple, *, timeout_s: float) -> Any:
        connection = self.started()
        connection.send((function, args))
        if not connection.poll(timeout_s):
            self.stop()  # the only way to stop a C loop: a fresh worker serves the next file
            raise AnalysisTimeout(f"the analysis took longer than the limit of {timeout_s:g} s")
        try:
            kind, value = connection.recv()
        except (EOFError, OSError):
            self.stop()
            raise AnalysisFailed("the analysis process died (memory limit?)") from None
        if kind == "ok":
            return value
        if kind == "refused":
            raise AnalysisRefused(value)
        if kind == "memory":
            raise AnalysisFailed(value)
        log.error("audio analysis failed in a worker: %s", value)
        raise AnalysisFailed("the analysis failed unexpectedly")

    def started(self) -> Connection:
        """This slot's pipe, starting (and, if asked, warming) its process first if needed."""
        if self._process is None or not self._process.is_alive():
            self.stop()
            parent, child = self._context.Pipe()
            process = self._context.Process(
                target=_serve, args=(child, self._memory_bytes, self._warm_up), daemon=True
            )
            process.start()
            child.close()
            self._process, self._connection = process, parent
            if not parent.poll(START_TIMEOUT_S):
                self.stop()
                raise AnalysisFailed("the audio worker did not start")
            try:
                parent.recv()  # ("ready", None)
            except (EOFError, OSError):
                self.stop()
                raise AnalysisFailed("the audio worker died while starting") from None
            self._ready = True
        assert self._connection is not None
        return self._connection

    def is_up(self) -> bool:
        """Whether this slot's process has started (and warmed, if asked) and still runs."""
        return self._ready and self._process is not None and self._process.is_alive()

    def stop(self) -> None:
        with self._stopping:
            if self._process is not None:
                self._process.kill()
                self._process.join(timeout=10)
            if self._connection is not None:
                self._connection.close()
            self._process = self._connection = None
            self._ready = False


class AudioWorkers:
    """A fixed number of worker processes with a bounded queue in front of them."""

    def __init__(
        self,
        *,
        processes: int,
        queue: int,
        timeout_s: float,
        memory_mb: int = 0,
        warm_up: bool = False,
    ):
        if processes < 1:
            raise ValueError(f"need at least one worker process, got {processes}")
        context = multiprocessing.get_context("spawn")
        self.timeout_s = timeout_s
        self._idle: queues.Queue[_Slot] = queues.Queue()
        self._slots = [_Slot(context, memory_mb * 2**20, warm_up) for _ in range(processes)]
        self._admitted = threading.BoundedSemaphore(processes + queue)
        self._lock = threading.Lock()
        self.in_flight = 0  # admitted files: running or queued
        if not warm_up:
            for slot in self._slots:
                self._idle.put(slot)
            return
        for slot in self._slots:  # each slot is idle once its process is up and warm
            threading.Thread(target=self._start, args=(slot,), daemon=True).start()

    def _start(self, slot: _Slot) -> None:
        try:
            slot.started()
        except (AnalysisFailed, OSError, EOFError):  # also: closed while starting
            log.warning("an audio worker did not start; the next file starts it again")
        finally:
            self._idle.put(slot)

    def run(self, function: Callable, *args: Any) -> Any:
        """function(*args) in a worker; raises WorkersBusy, AnalysisTimeout, AnalysisFailed,
        AnalysisRefused (the function's ValueError)."""
        if not self._admitted.acquire(blocking=False):
            raise WorkersBusy("every audio worker is busy and the queue is full")
        self._count(+1)
        try:
            try:
                # A queued file waits at most one time limit: then a worker is surely stuck.
                slot = self._idle.get(timeout=self.timeout_s)
            except queues.Empty:
                raise WorkersBusy("no audio worker became free in time") from None
            try:
                return slot.run(function, args, timeout_s=self.timeout_s)
            finally:
                self._idle.put(slot)
        finally:
            self._count(-1)
            self._admitted.release()

    def status(self) -> tuple[int, int]:
        """(workers up, workers): with warm-up, up means its first file compiles nothing."""
        return sum(slot.is_up() for slot in self._slots), len(self._slots)

    def _count(self, step: int) -> None:
        with self._lock:
            self.in_flight += step

    def close(self) -> None:
        for slot in self._slots:
            slot.stop()
