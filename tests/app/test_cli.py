"""`musicsim serve --workers 2`: two real processes on one port, each answering alone,
both mapping the same persisted embeddings file."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from uvicorn_processes import ROOT, http_client, server_env, start_logged

START_SECONDS = 180.0


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def mapped_embeddings(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {line.split()[-1] for line in maps.splitlines() if line.endswith("embeddings.npy")}


def answers_alone(url: str, song_id: int) -> bool:
    # A fresh connection each time: the stopped worker cannot accept it, the other must.
    with http_client(timeout=30.0) as client:
        return client.get(f"{url}/songs/{song_id}/similar?k=5").status_code == 200


def test_two_workers_each_answer_and_share_one_embeddings_file(
    tmp_path, sqlite_template, bundle_dir
):
    database = tmp_path / "workers.db"
    shutil.copyfile(sqlite_template, database)
    env = server_env(bundle_dir, f"sqlite:///{database}", index_cache_dir=str(tmp_path / "cache"))
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "app.cli", "serve", "--port", "0", "--workers", "2"]
    started: list[subprocess.Popen] = []
    workers: list[int] = []
    try:
        parent, url = start_logged(
            command, env=env, workdir=tmp_path, name="workers", started=started
        )
        song_id = httpx.get(f"{url}/songs?limit=1").json()["items"][0]["id"]
        deadline = time.monotonic() + START_SECONDS  # /health answered by one; wait for both
        while time.monotonic() < deadline:
            workers = [p for p in children_of(parent.pid) if mapped_embeddings(p)]
            if len(workers) == 2:
                break
            time.sleep(0.5)
        log = (tmp_path / "workers.log").read_text(errors="replace")
        assert len(workers) == 2, log
        assert mapped_embeddings(workers[0]) == mapped_embeddings(workers[1])
        for stopped in workers:
            os.kill(stopped, signal.SIGSTOP)
            try:
                assert answers_alone(url, song_id), f"no answer while worker {stopped} stopped"
            finally:
                os.kill(stopped, signal.SIGCONT)
        log = (tmp_path / "workers.log").read_text(errors="replace")
        # one access line per request, the middleware's: uvicorn's own stay off in workers
        assert "musicsim.access" in log and "uvicorn.access" not in log, log[-2000:]
    finally:
        for process in started:  # SIGTERM: the supervisor stops its workers first
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for pid in workers:  # any the supervisor left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
