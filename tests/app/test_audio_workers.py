"""The audio worker pool: a time limit per file, a bounded queue, workers that recover."""

import multiprocessing
import threading
import time

import numpy as np
import pytest

from app.audio_workers import (
    AnalysisRefused,
    AnalysisTimeout,
    AudioWorkers,
    WorkersBusy,
    analyse_audio,
)


@pytest.fixture
def workers():
    pool = AudioWorkers(processes=1, queue=0, timeout_s=1.0)
    yield pool
    pool.close()


def test_a_file_past_the_time_limit_is_stopped_and_the_worker_replaced(workers):
    with pytest.raises(AnalysisTimeout, match="limit of 1 s"):
        workers.run(time.sleep, 3600)  # would hold the worker for an hour
    assert workers.run(np.add, 2, 3) == 5  # a fresh worker took its place


def test_past_the_workers_and_the_queue_a_file_is_refused_at_once(workers):
    outcome = []

    def hold_the_worker():
        try:
            workers.run(time.sleep, 60)
        except AnalysisTimeout as exc:
            outcome.append(exc)

    busy = threading.Thread(target=hold_the_worker)
    busy.start()
    try:
        while workers.in_flight == 0:  # until the first file holds the only worker
            time.sleep(0.01)
        with pytest.raises(WorkersBusy, match="queue is full"):
            workers.run(np.add, 1, 1)
    finally:
        busy.join()
    assert len(outcome) == 1  # the first file was stopped at its limit, not left running


def test_undecodable_audio_is_refused_with_the_reason(workers):
    with pytest.raises(AnalysisRefused, match="cannot decode audio: not a recognised audio format"):
        workers.run(analyse_audio, b"this is not audio" * 100, 30.0)


def test_status_counts_a_worker_up_only_once_it_has_started_and_while_it_lives(workers):
    assert workers.status() == (0, 1)  # no warm-up: started by the first file
    assert workers.run(np.add, 1, 1) == 2
    assert workers.status() == (1, 1)
    with pytest.raises(AnalysisTimeout):
        workers.run(time.sleep, 3600)  # the stuck worker is killed
    assert workers.status() == (0, 1)


def test_a_worker_still_warming_up_is_not_counted_up():
    # The warm-up imports librosa and compiles its kernels: seconds, against the
    # microseconds between starting the pool and asking.
    pool = AudioWorkers(processes=1, queue=0, timeout_s=60.0, warm_up=True)
    try:
        while not multiprocessing.active_children():  # its process is running, warming up
            time.sleep(0.001)
        assert pool.status() == (0, 1)
    finally:
        pool.close()
