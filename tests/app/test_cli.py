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
import pytest
from uvicorn_processes import ROOT, free_port, server_env

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


def wait_for_health(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        time.sleep(0.3)
    pytest.fail(f"no /health from the workers:\n{log.read_text(errors='replace')}")


def answers_alone(url: str, song_id: int) -> bool:
    # A fresh connection each time: the stopped worker cannot accept it, the other must.
    with httpx.Client(timeout=30.0) as client:
        return client.get(f"{url}/songs/{song_id}/similar?k=5").status_code == 200


def test_two_workers_each_answer_and_share_one_embeddings_file(
    tmp_path, sqlite_template, bundle_dir
):
    database = tmp_path / "workers.db"
    shutil.copyfile(sqlite_template, database)
    env = server_env(bundle_dir, f"sqlite:///{database}", index_cache_dir=str(tmp_path / "cache"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "workers.log"
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "2"]
    env["PYTHONPATH"] = str(ROOT)
    with log.open("wb") as out:
        parent = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_health(url, parent, log)
        song_id = httpx.get(f"{url}/songs?limit=1").json()["items"][0]["id"]
        deadline = time.monotonic() + START_SECONDS  # /health answered by one; wait for both
        workers: list[int] = []
        while time.monotonic() < deadline:
            workers = [p for p in children_of(parent.pid) if mapped_embeddings(p)]
            if len(workers) == 2:
                break
            time.sleep(0.5)
        assert len(workers) == 2, log.read_text(errors="replace")
        assert mapped_embeddings(workers[0]) == mapped_embeddings(workers[1])
        for stopped in workers:
            os.kill(stopped, signal.SIGSTOP)
            try:
                assert answers_alone(url, song_id), f"no answer while worker {stopped} stopped"
            finally:
                os.kill(stopped, signal.SIGCONT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGTERM)
        try:
            parent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait(timeout=10)
