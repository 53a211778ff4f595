"""Real uvicorn processes serving the app factory on loopback ports they bind themselves.

started: list[subprocess.Popen] = []
try:
    process, url = start_server(server_env(bundle_dir, url), tmp_path, "a", started)
finally:
    stop_all(started)
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 120.0  # bound on waiting for /health (torch, FAISS and the index load first)
# uvicorn logs the port it bound (also when asked for port 0), in text or JSON logs.
BOUND = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
# uvicorn closes a connection idle for its keep-alive (5 s by default) and httpx keeps an
# idle one for 5 s too, so a request sent after about 5 s of quiet can go out on a
# connection the server is closing ("Server disconnected without sending a response").
# The tests' clients let go of idle connections first, as any pooling client should.
CLIENT_KEEP_ALIVE_SECONDS = 1.0


def http_client(base_url: str = "", timeout: float | httpx.Timeout = 30.0) -> httpx.Client:
    """An httpx client for these servers: idle connections dropped before the server drops them."""
    limits = httpx.Limits(keepalive_expiry=CLIENT_KEEP_ALIVE_SECONDS)
    return httpx.Client(base_url=base_url, timeout=timeout, limits=limits)


def server_env(bundle_dir: Path, database_url: str, **settings: str) -> dict[str, str]:
    """This environment without MUSICSIM_* variables, plus the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICSIM_")}
    env["MUSICSIM_MODEL_DIR"] = str(bundle_dir)
    env["MUSICSIM_DATABASE_URL"] = database_url
    env["MUSICSIM_AUDIO_WARM_UP"] = "0"  # audio workers start with the first file, not the server
    env |= {f"MUSICSIM_{name.upper()}": value for name, value in settings.items()}
    return env


def start_server(
    env: dict[str, str], workdir: Path, name: str, started: list, *, timed: bool = False
):
    """Start uvicorn on a loopback port of its own and wait for /health; returns (process, url).

    The server binds port 0 and the test reads the port it got from the server's log:
    picking a free port first and binding it later would let another process (or a
    replica started alongside) take it in between.

    timed: run `python -m app.server` (what `musicsim serve` runs: uvicorn with the header,
    keep-alive and body timeouts of the settings) instead of plain uvicorn.
    """
    if timed:
        command = [sys.executable, "-m", "app.server", "--host", "127.0.0.1", "--port", "0"]
        env = {**env, "PYTHONPATH": str(ROOT)}
        return start_logged(command, env=env, workdir=workdir, name=name, started=started)
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "app.main:create_app",
        "--app-dir",
        str(ROOT),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-access-log",
    ]
    return start_logged(command, env=env, workdir=workdir, name=name, started=started)


def start_logged(
    command: list[str], *, env: dict[str, str], workdir: Path, name: str, started: list
):
    """Run a server command that binds port 0; wait for /health at the port it logs."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        # cwd is the test's own folder, so no stray .env file is read
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    started.append(process)
    deadline = time.monotonic() + START_SECONDS
    url = None
    while process.poll() is None and time.monotonic() < deadline:
        if url is None:
            bound = BOUND.search(log_path.read_text(errors="replace"))
            url = bound and f"http://127.0.0.1:{bound.group(1)}"
        if url is not None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    return process, url
        time.sleep(0.2)
    log_text = log_path.read_text(errors="replace")
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
        pytest.fail(f"the server did not answer /health in {START_SECONDS} s:\n{log_text}")
    pytest.fail(f"the server exited with {process.returncode}:\n{log_text}")


def start_servers(env: dict[str, str], workdir: Path, names: list[str], started: list):
    """Start several servers at once (start-up is mostly waiting); returns their urls."""
    with ThreadPoolExecutor(len(names)) as pool:
        futures = [pool.submit(start_server, env, workdir, name, started) for name in names]
        return [future.result()[1] for future in futures]


def stop_all(started: list[subprocess.Popen]) -> None:
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
