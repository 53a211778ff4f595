"""Real uvicorn processes serving the app factory on free loopback ports, for tests.

started: list[subprocess.Popen] = []
try:
    process, url = start_server(server_env(bundle_dir, url), tmp_path, "a", started)
finally:
    stop_all(started)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 120.0  # bound on waiting for /health (torch, FAISS and the index load first)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(bundle_dir: Path, database_url: str, **settings: str) -> dict[str, str]:
    """This environment without MUSICSIM_* variables, plus the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICSIM_")}
    env["MUSICSIM_MODEL_DIR"] = str(bundle_dir)
    env["MUSICSIM_DATABASE_URL"] = database_url
    env |= {f"MUSICSIM_{name.upper()}": value for name, value in settings.items()}
    return env


def start_server(
    env: dict[str, str], workdir: Path, name: str, started: list, *, timed: bool = False
):
    """Start uvicorn on a free loopback port and wait for /health; returns (process, url).

    timed: run `python -m app.server` (what `musicsim serve` runs: uvicorn with the header,
    keep-alive and body timeouts of the settings) instead of plain uvicorn.
    """
    for _attempt in range(3):  # another process may take the free port before uvicorn binds it
        port = free_port()
        log_path = workdir / f"{name}-{port}.log"
        if timed:
            command = [sys.executable, "-m", "app.server", "--host", "127.0.0.1"]
            command += ["--port", str(port)]
            env = {**env, "PYTHONPATH": str(ROOT)}
        else:
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
                str(port),
                "--no-access-log",
            ]
        with log_path.open("wb") as log:
            # cwd is the test's own folder, so no stray .env file is read
            process = subprocess.Popen(
                command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    return process, url
            time.sleep(0.2)
        log_text = log_path.read_text(errors="replace")
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
            pytest.fail(f"the server did not answer /health in {START_SECONDS} s:\n{log_text}")
        if "address already in use" not in log_text.lower():
            pytest.fail(f"the server exited with {process.returncode}:\n{log_text}")
    pytest.fail("no free port could be bound in 3 attempts")


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
