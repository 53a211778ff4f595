"""The Dockerfile and docker-compose.yml, checked by reading them (docker cannot run here).

What they name must exist in the project (files, entrypoint modes, settings, routes),
the ports and health checks must agree with each other, volumes must be declared, the
image must run as a non-root user with the project's CPU-only torch pin, and the
entrypoint's `prepare` step must really import a catalogue.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from sqlalchemy.engine import make_url

from app.config import Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "scripts" / "docker-entrypoint.sh"
# Settings of the Milvus index backend, which another branch adds to app/config.py;
# once Settings has them this allowance is moot.
AWAITED_SETTINGS = {"MUSICSIM_INDEX_BACKEND", "MUSICSIM_MILVUS_URI"}


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def arguments_of(instructions, keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions if name == keyword]


def env_of(instructions) -> dict[str, str]:
    env = {}
    for arguments in arguments_of(instructions, "ENV"):
        env |= dict(pair.split("=", 1) for pair in arguments.split())
    return env


def entrypoint_modes() -> set[str]:
    """The commands the entrypoint's `case` accepts."""
    return set(re.findall(r"^\s+(\w+)\)", ENTRYPOINT.read_text(), flags=re.MULTILINE))


def known_variables() -> set[str]:
    """MUSICSIM_* names something reads: Settings fields and the entrypoint's own."""
    fields = {f"MUSICSIM_{name.upper()}" for name in Settings.model_fields}
    return fields | set(re.findall(r"\$\{(MUSICSIM_\w+)", ENTRYPOINT.read_text()))


def musicsim_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("build") == "."}


def test_the_image_is_slim_python_311_with_the_cpu_torch_pin(dockerfile):
    assert arguments_of(dockerfile, "FROM") == ["python:3.11-slim"]
    pin = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    torch_installs = [a for a in arguments_of(dockerfile, "RUN") if "torch" in a]
    assert len(torch_installs) == 1
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_installs[0]
    assert f'"torch=={pin}"' in torch_installs[0]


def test_the_image_runs_as_a_user_it_creates_not_root(dockerfile):
    users = arguments_of(dockerfile, "USER")
    assert users and users[-1] not in {"root", "0"}
    keywords = [name for name, _ in dockerfile]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    created = [a for a in arguments_of(dockerfile, "RUN") if "useradd" in a]
    assert created and re.search(rf"useradd .*\b{users[-1]}\b", created[0])
    # the data volume belongs to that user, so the first run can write to it
    volume = json.loads(arguments_of(dockerfile, "VOLUME")[0])[0]
    assert re.search(rf"chown {users[-1]}(:\S+)? {volume}\b", created[0])


def test_what_the_image_copies_exists_and_is_not_ignored(dockerfile):
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for arguments in arguments_of(dockerfile, "COPY"):
        *sources, _destination = arguments.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the project"
            assert source.split("/")[0] not in ignored, f"COPY {source} is in .dockerignore"


def test_the_entrypoint_is_copied_executable_and_knows_the_default_command(dockerfile):
    workdir = Path(arguments_of(dockerfile, "WORKDIR")[-1])
    entrypoint = Path(json.loads(arguments_of(dockerfile, "ENTRYPOINT")[0])[0])
    relative = entrypoint.relative_to(workdir)
    assert ROOT / relative == ENTRYPOINT and os.access(ENTRYPOINT, os.X_OK)
    assert any(a.split()[0] == str(relative) for a in arguments_of(dockerfile, "COPY"))
    assert json.loads(arguments_of(dockerfile, "CMD")[0]) == ["all"]
    assert entrypoint_modes() == {"all", "prepare", "serve"}


def test_the_health_check_calls_the_health_route_on_the_exposed_port(dockerfile):
    (exposed,) = arguments_of(dockerfile, "EXPOSE")
    check = arguments_of(dockerfile, "HEALTHCHECK")[0]
    url = urlparse(re.search(r"http://[^'\" ]+", check).group(0))
    assert str(url.port) == exposed == env_of(dockerfile)["MUSICSIM_PORT"]
    assert url.path in create_app(Settings(_env_file=None)).openapi()["paths"]


def test_the_image_sets_only_real_settings(dockerfile):
    env = env_of(dockerfile)
    names = {name for name in env if name.startswith("MUSICSIM_")}
    assert names <= known_variables(), names - known_variables()
    volume = json.loads(arguments_of(dockerfile, "VOLUME")[0])[0]
    database = make_url(env["MUSICSIM_DATABASE_URL"]).database
    assert database.startswith(volume + "/"), "the SQLite file must live on the volume"
    assert env["MUSICSIM_MODEL_DIR"].startswith(volume + "/")


def test_compose_runs_entrypoint_modes_with_real_settings(compose):
    services = musicsim_services(compose)
    assert {"api", "prepare", "api-1", "api-2"} <= set(services)
    for name, service in services.items():
        assert service["command"][0] in entrypoint_modes(), name
        names = set(service.get("environment", {}))
        unknown = names - known_variables() - AWAITED_SETTINGS
        assert not unknown, f"{name} sets {unknown}, which nothing reads"
        Settings(_env_file=None, **_settings_of(service))  # valid values too


def _settings_of(service: dict) -> dict:
    fields = set(Settings.model_fields)
    return {
        name.removeprefix("MUSICSIM_").lower(): value
        for name, value in service.get("environment", {}).items()
        if name.removeprefix("MUSICSIM_").lower() in fields
    }


def test_compose_declares_its_volumes_and_mounts_existing_files(compose):
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).is_file(), f"{name} mounts missing {source}"
            else:
                used.add(source)
        for dependency in service.get("depends_on", {}):
            assert dependency in compose["services"], f"{name} depends on {dependency}"
    assert used == declared


def test_services_waited_on_as_healthy_have_a_health_check(compose, dockerfile):
    image_has_check = bool(arguments_of(dockerfile, "HEALTHCHECK"))
    for name, service in compose["services"].items():
        for dependency, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                target = compose["services"][dependency]
                built_here = target.get("build") == "."
                assert "healthcheck" in target or (built_here and image_has_check), (
                    f"{name} waits for {dependency} to be healthy, which has no check"
                )


def test_the_scaled_profile_is_postgres_two_replicas_a_balancer_and_milvus(compose, dockerfile):
    scaled = {n: s for n, s in compose["services"].items() if "scaled" in s.get("profiles", [])}
    replicas = {n: s for n, s in scaled.items() if s.get("command") == ["serve"]}
    assert len(replicas) >= 2
    postgres = scaled["postgres"]["environment"]
    for name, replica in replicas.items():
        url = make_url(replica["environment"]["MUSICSIM_DATABASE_URL"])
        assert (url.drivername, url.host) == ("postgresql+psycopg", "postgres"), name
        assert (url.username, url.password, url.database) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        )
        assert replica["environment"]["MUSICSIM_INDEX_BACKEND"] == "milvus"
        milvus = urlparse(replica["environment"]["MUSICSIM_MILVUS_URI"])
        assert milvus.hostname in scaled and milvus.port == 19530
    # the balancer's upstreams are exactly the replicas, on the port the image exposes
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    upstreams = re.findall(r"^\s*server\s+([\w-]+):(\d+);", nginx, flags=re.MULTILINE)
    (exposed,) = arguments_of(dockerfile, "EXPOSE")
    assert sorted(upstreams) == sorted((name, exposed) for name in replicas)
    listen = re.search(r"listen\s+(\d+);", nginx).group(1)
    assert [p.split(":")[1] for p in scaled["lb"]["ports"]] == [listen]
    assert {"etcd", "minio", "milvus"} <= set(scaled)


def test_the_default_service_publishes_the_exposed_port(compose, dockerfile):
    api = compose["services"]["api"]
    assert "profiles" not in api  # `docker compose up` starts it
    (exposed,) = arguments_of(dockerfile, "EXPOSE")
    assert [p.split(":")[1] for p in api["ports"]] == [exposed]
    assert "musicsim-data:/data" in api["volumes"]


def test_the_entrypoint_prepare_step_imports_the_catalogue(
    tmp_path, small_catalogue_dir, bundle_dir, catalogue
):
    # Data and model exist already, as on a second run: prepare only imports.
    database = tmp_path / "musicsim.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICSIM_")}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "MUSICSIM_DEMO_DATA": str(small_catalogue_dir),
        "MUSICSIM_MODEL_DIR": str(bundle_dir),
        "MUSICSIM_DATABASE_URL": f"sqlite:///{database}",
    }
    result = subprocess.run(
        [str(ENTRYPOINT), "prepare"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM songs").fetchone()
    assert count == len(catalogue.tracks)
    unknown = subprocess.run([str(ENTRYPOINT), "bogus"], env=env, capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown command 'bogus'" in unknown.stderr
