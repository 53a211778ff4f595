"""Concurrent single queries gathered into one batched search.

An exact scan reads every stored vector once per call whatever the number of
queries, so eight queries in one matrix-matrix product cost little more than
one. The first caller to arrive while no batch runs leads: it waits at most
`wait_s` for company (a lone query pays at most that), takes every pending
query, runs them as one batch and hands each caller its answer. Queries that
arrive while a batch runs wait for it to finish and then go together, led by
the first of them, without a further wait.

    >>> coalescer = Coalescer(run_batch, wait_s=0.0005)
    >>> answer = coalescer.submit(item)      # from many threads at once
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")
MAX_BATCH = 64  # queries per batch: the scores of a chunk stay cache-sized


class _Slot(Generic[Item, Answer]):
    __slots__ = ("item", "answer", "error", "done", "lead")

    def __init__(self, item: Item):
        self.item = item
        self.answer: Answer | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.lead = False  # set when this waiting caller is to lead the next batch


class Coalescer(Generic[Item, Answer]):
    """Runs `run_batch(items) -> answers` (same order) for queries submitted at once."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Sequence[Answer]],
        *,
        wait_s: float,
        max_batch: int = MAX_BATCH,
    ):
        if wait_s < 0 or max_batch < 1:
            raise ValueError("wait_s must be >= 0 and max_batch >= 1")
        self._run_batch = run_batch
        self.wait_s = wait_s
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._pending: list[_Slot] = []
        self._leading = False
        self.batches = 0  # batches run, and queries in them: how much coalescing happened
        self.queries = 0

    def submit(self, item: Item) -> Answer:
        slot: _Slot[Item, Answer] = _Slot(item)
        with self._cond:
            self._pending.append(slot)
            first = not self._leading
            if first:
                self._leading = True
            else:
                self._cond.notify_all()  # a waiting leader may have a full batch now
        if not first:
            slot.done.wait()
            if not slot.lead:
                return self._result(slot)
        self._lead(wait=first)
        slot.done.wait()
        return self._result(slot)

    def _lead(self, *, wait: bool) -> None:
        with self._cond:
            if wait and self.wait_s > 0:
                deadline = time.monotonic() + self.wait_s
                self._cond.wait_for(
                    lambda: len(self._pending) >= self.max_batch,
                    timeout=max(deadline - time.monotonic(), 0.0),
                )
            batch, self._pending = (
                self._pending[: self.max_batch],
                self._pending[self.max_batch :],
            )
        try:
            answers = self._run_batch([s.item for s in batch])
            for s, answer in zip(batch, answers, strict=True):
                s.answer = answer
        except BaseException as exc:  # every caller of the batch sees the failure
            for s in batch:
                s.error = exc
        with self._cond:
            self.batches += 1
            self.queries += len(batch)
            if self._pending:  # arrived meanwhile: the first of them leads, at once
                self._pending[0].lead = True
                self._pending[0].done.set()
            else:
                self._leading = False
        for s in batch:
            if s.lead:
                s.lead = False  # it led an earlier batch and waits for its own answer
            s.done.set()

    @staticmethod
    def _result(slot: _Slot) -> Answer:
        if slot.error is not None:
            raise slot.error
        return slot.answer  # type: ignore[return-value]
