"""App fixtures: a small trained bundle, a database imported from the small catalogue.

Tests that take `settings` (or `client`) run twice: on a fresh SQLite file and on a
fresh PostgreSQL database. Modules that exercise the index also run on the Milvus
backend (Milvus Lite, on SQLite). The PostgreSQL server is the one MUSICSIM_TEST_POSTGRES_URL
names (`bash scripts/test.sh` starts a throw-away one); without it those runs are skipped.
"""

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.catalogue.importing import import_catalogue
from app.config import Settings
from app.db import open_database
from app.main import create_app
from training.artefacts import load_bundle, save_bundle
from training.config import TrainConfig
from training.data.fma import load_catalogue
from training.train import train_on_catalogue


@pytest.fixture(scope="session")
def catalogue(small_catalogue_dir):
    return load_catalogue(data_dir=small_catalogue_dir)


@pytest.fixture(scope="session")
def bundle_dir(catalogue, tmp_path_factory) -> Path:
    run = train_on_catalogue(catalogue, TrainConfig(epochs=5, seed=0))
    out = tmp_path_factory.mktemp("models") / "small"
    return save_bundle(run, out_dir=out, data_fingerprint=catalogue.fingerprint)


@pytest.fixture(scope="session")
def bundle(bundle_dir):
    return load_bundle(bundle_dir)


POSTGRES_URL_VARIABLE = "MUSICSIM_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_server():
    """An AUTOCOMMIT engine on the test server's maintenance database (for CREATE DATABASE)."""
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_URL_VARIABLE}, a server where we may create "
            "databases; `bash scripts/test.sh` starts a throw-away one and sets it"
        )
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _database_url(server, name: str) -> str:
    return make_url(server.url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_template(postgres_server, catalogue) -> str:
    """A PostgreSQL database holding the small catalogue, copied for each test."""
    name = f"musicsim_template_{uuid.uuid4().hex[:12]}"
    with postgres_server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = open_database(_database_url(postgres_server, name))
    import_catalogue(engine, catalogue)
    engine.dispose()  # a template must have no connections while it is copied
    yield name
    with postgres_server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def _postgres_copy(server, template: str) -> Iterator[str]:
    """The URL of a new database copied from the template; dropped on leaving."""
    name = f"musicsim_test_{uuid.uuid4().hex[:12]}"
    with server.connect() as connection:
        # a file-level copy of the template: much faster than importing again
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _database_url(server, name)
    with server.connect() as connection:  # FORCE: a test may leave an engine open
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(postgres_server, postgres_template) -> Iterator[str]:
    """A fresh PostgreSQL database holding the small catalogue; dropped after the test."""
    with _postgres_copy(postgres_server, postgres_template) as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory, catalogue) -> Path:
    """A SQLite file holding the small catalogue, copied for each test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "musicsim.db"
    engine = open_database(f"sqlite:///{path}")
    import_catalogue(engine, catalogue)
    engine.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


def _sqlite_copy(template: Path, folder: Path) -> str:
    path = folder / "musicsim.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh database holding the small catalogue, on each database the service supports."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return _sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path)


@pytest.fixture
def index_backend() -> str:
    """FAISS by default; modules that exercise the index override this with both backends."""
    return "faiss"


@pytest.fixture(scope="module")
def milvus_lite_uri(tmp_path_factory) -> str:
    """A Milvus Lite file per test module: the real engine, started by the first client."""
    return str(tmp_path_factory.mktemp("milvus") / "milvus.db")


@pytest.fixture
def index_settings(request, index_backend) -> dict:
    """Settings for the chosen backend; on Milvus, a collection of this test's own, and
    no start-up build of the scorings' neighbourhoods (Milvus Lite searches by brute force
    in Python: it would compete with the test for the CPU)."""
    if index_backend == "faiss":
        return {"index_backend": "faiss"}
    return {
        "index_backend": "milvus",
        "milvus_uri": request.getfixturevalue("milvus_lite_uri"),
        "milvus_collection": f"test_{uuid.uuid4().hex}",
        "scoring_warmup": False,
    }


@pytest.fixture
def settings(database_url, bundle_dir, index_settings, tmp_path) -> Settings:
    """Settings of a service on a fresh database holding the small catalogue."""
    return Settings(
        model_dir=bundle_dir,
        database_url=database_url,
        index_cache_dir=tmp_path / "index-cache",
        _env_file=None,
        **index_settings,
    )


def pytest_collection_modifyitems(config, items):
    """Milvus runs on SQLite only: the index backend does not depend on the database,
    and each of the 2 x 2 combinations would cost a full app start."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        milvus = params.get("index_backend") == "milvus"
        both = milvus and params.get("database_url") == "postgresql"
        (drop if both else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def client(settings):
    """A started service; its start-up build of the scorings' neighbourhoods (if any) is
    waited for, so requests for any scoring answer at once."""
    with TestClient(create_app(settings)) as client:
        client.app.state.service.index.wait_for_neighbourhoods()
        yield client


@pytest.fixture(
    scope="module",
    params=[("sqlite", "faiss"), ("postgresql", "faiss"), ("sqlite", "milvus")],
    ids=["sqlite-faiss", "postgresql-faiss", "sqlite-milvus"],
)
def read_only_client(request, bundle_dir, tmp_path_factory) -> Iterator[TestClient]:
    """One service per module, database and index backend, for tests that never write:
    each start embeds and indexes the whole catalogue (on Milvus Lite, seconds more),
    so `client` (a service per test) is for tests that change something."""
    database, backend = request.param
    folder = tmp_path_factory.mktemp("read-only")
    index = {"index_backend": backend}
    if backend == "milvus":
        index |= {
            "milvus_uri": request.getfixturevalue("milvus_lite_uri"),
            "milvus_collection": f"test_{uuid.uuid4().hex}",
            "scoring_warmup": False,  # as index_settings: no brute-force build in Python
        }
    with ExitStack() as stack:
        if database == "postgresql":
            server = request.getfixturevalue("postgres_server")
            template = request.getfixturevalue("postgres_template")
            url = stack.enter_context(_postgres_copy(server, template))
        else:
            url = _sqlite_copy(request.getfixturevalue("sqlite_template"), folder)
        settings = Settings(
            model_dir=bundle_dir,
            database_url=url,
            index_cache_dir=folder / "index-cache",
            _env_file=None,
            **index,
        )
        client = stack.enter_context(TestClient(create_app(settings)))
        client.app.state.service.index.wait_for_neighbourhoods()  # as `client`
        yield client


@pytest.fixture(scope="session")
def music_folder(tmp_path_factory) -> Path:
    """A copy of the real clips (the shared folder is read-only), as a user's music folder."""
    from paths import real_clips

    folder = tmp_path_factory.mktemp("music") / "mymusic"
    folder.mkdir()
    for clip in real_clips(minimum=8):
        shutil.copyfile(clip, folder / clip.name)
    return folder


@pytest.fixture(scope="session")
def library_dir(music_folder, tmp_path_factory) -> Path:
    """`musicsim extract` of the real clips: an FMA-format folder describing a library."""
    from training.audio.extraction import extract_catalogue

    out = tmp_path_factory.mktemp("extracted") / "mylib"
    report = extract_catalogue(paths=[music_folder], out_dir=out, jobs=1, excerpt_seconds=30.0)
    assert report.written == 8, report.skipped
    return out
