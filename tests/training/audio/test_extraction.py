"""musicsim extract on a real local Dask cluster, with the real clips in ../shared/data/audio."""

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster
from paths import real_clips
from typer.testing import CliRunner

from app.cli import app as cli
from training.audio.extraction import STORE_FOLDER, extract_catalogue
from training.audio.journal import JOURNAL_NAME
from training.data.fma import load_catalogue


@pytest.fixture(scope="module")
def clips() -> list[Path]:
    """The real clips; a failure naming their folder when fewer than four are there."""
    return real_clips(minimum=4)


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded workers; a task whose worker dies fails at once (no retry)."""
    settings = {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with (
        dask.config.set(settings),
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield cluster.scheduler_address, client


def journal_paths(out: Path) -> list[str]:
    lines = (out / STORE_FOLDER / JOURNAL_NAME).read_text().splitlines()
    return [json.loads(line)["key"][0] for line in lines]


def test_results_stream_to_disk_and_a_rerun_analyses_nothing_again(clips, cluster, tmp_path):
    address, _ = cluster
    clips = clips[:3]
    out = tmp_path / "out"
    on_disk_when_reported = []

    def on_file(path, reason):
        assert reason is None
        on_disk_when_reported.append(str(path.resolve()) in journal_paths(out))

    first = extract_catalogue(paths=clips, out_dir=out, scheduler=address, on_file=on_file)
    assert (first.written, first.skipped, first.reused) == (3, [], 0)
    assert on_disk_when_reported == [True] * 3  # each result was durable before it was reported
    features = load_catalogue(data_dir=out, cache_dir=tmp_path / "c1").features

    again = extract_catalogue(paths=clips, out_dir=out, scheduler=address)
    assert (again.written, again.reused) == (3, 3)
    assert len(journal_paths(out)) == 3  # nothing was analysed twice
    np.testing.assert_array_equal(
        load_catalogue(data_dir=out, cache_dir=tmp_path / "c2").features, features
    )


def test_a_changed_file_or_excerpt_is_analysed_again(clips, cluster, tmp_path):
    address, _ = cluster
    clip = tmp_path / "clip.ogg"
    shutil.copy(clips[0], clip)
    out = tmp_path / "out"
    extract_catalogue(paths=[clip], out_dir=out, scheduler=address)
    assert (
        extract_catalogue(paths=[clip], out_dir=out, scheduler=address, excerpt_seconds=None).reused
        == 0
    )
    os.utime(clip, ns=(1, 1))  # another modification time: another file for the store
    assert extract_catalogue(paths=[clip], out_dir=out, scheduler=address).reused == 0
    assert len(journal_paths(out)) == 3


def _hold_one_file(name: str, marker: str) -> None:
    """Runs in each worker: the first worker to start `name` writes its pid to `marker`
    and holds the file until it is killed; every other file (and `name` once the
    marker exists) is analysed as usual."""
    import os
    import time
    from pathlib import Path

    import training.audio.extraction as extraction

    analyse = getattr(extraction, "_unheld_features_from_file", extraction.features_from_file)

    def held(path, **kwargs):
        if Path(path).name == name and not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()))
            while True:  # busy for good: the test kills this worker here
                time.sleep(0.1)
        return analyse(path, **kwargs)

    extraction._unheld_features_from_file = analyse
    extraction.features_from_file = held


def _release_files() -> None:
    import training.audio.extraction as extraction

    analyse = getattr(extraction, "_unheld_features_from_file", None)
    if analyse is not None:
        extraction.features_from_file = analyse


def test_a_worker_that_dies_loses_only_its_in_flight_file(clips, cluster, tmp_path):
    # No race between looking at a busy worker and killing it: the victim is held
    # inside one known file until the kill, so exactly that file is lost.
    address, client = cluster
    held, marker = clips[2], tmp_path / "held-by-pid"
    client.run(_hold_one_file, held.name, str(marker))
    killed: list[int] = []

    def kill_the_holder() -> None:
        deadline = time.monotonic() + 120  # a hang guard, not a speed check
        while not marker.exists() or not marker.read_text():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        killed.append(int(marker.read_text()))
        os.kill(killed[0], signal.SIGKILL)  # the nanny starts a new worker

    killer = threading.Thread(target=kill_the_holder)
    killer.start()
    out = tmp_path / "out"
    try:
        first = extract_catalogue(paths=clips, out_dir=out, scheduler=address)
    finally:
        killer.join()
        client.run(_release_files)
    assert killed, "no worker ever started the held file"
    assert [path for path, _ in first.skipped] == [held]
    assert "worker analysing it died" in first.skipped[0][1]
    assert first.written == len(clips) - 1
    assert len(journal_paths(out)) == len(clips) - 1  # every other result was kept

    second = extract_catalogue(paths=clips, out_dir=out, scheduler=address)
    assert (second.written, second.skipped, second.reused) == (len(clips), [], len(clips) - 1)
    assert len(journal_paths(out)) == len(clips)  # only the lost file was analysed again


def test_a_torn_last_journal_line_is_dropped_and_its_file_redone(tmp_path, clips):
    out = tmp_path / "out"
    extract_catalogue(paths=[clips[0]], out_dir=out, jobs=1)
    journal = out / STORE_FOLDER / JOURNAL_NAME
    whole = journal.read_text()
    journal.write_text(whole[: len(whole) // 2])  # a crash in the middle of the write
    report = extract_catalogue(paths=[clips[0]], out_dir=out, jobs=1)
    assert (report.written, report.reused) == (1, 0)
    assert journal.read_text() == whole


def test_extract_names_an_unreachable_scheduler(tmp_path, clips):
    result = CliRunner().invoke(
        cli, ["extract", str(clips[0]), "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"]
    )
    assert result.exit_code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output


def test_extract_refuses_jobs_with_a_scheduler(tmp_path, clips):
    args = ["extract", str(clips[0]), "--out", str(tmp_path), "--jobs", "2"]
    result = CliRunner().invoke(cli, [*args, "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2 and "--jobs" in result.output
