"""App fixtures: a small trained bundle, a database imported from the small catalogue."""

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.catalogue import import_catalogue
from app.config import Settings
from app.db import open_database
from app.main import create_app
from training.artefacts import load_bundle, save_bundle
from training.fma import load_catalogue
from training.train import TrainConfig, train_on_catalogue


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
    """Settings for the chosen backend; on Milvus, a collection of this test's own."""
    if index_backend == "faiss":
        return {"index_backend": "faiss"}
    return {
        "index_backend": "milvus",
        "milvus_uri": request.getfixturevalue("milvus_lite_uri"),
        "milvus_collection": f"test_{uuid.uuid4().hex}",
    }


@pytest.fixture
def settings(tmp_path, bundle_dir, catalogue, index_settings) -> Settings:
    """A fresh SQLite database holding the small catalogue."""
    url = f"sqlite:///{tmp_path / 'musicsim.db'}"
    engine = open_database(url)
    import_catalogue(engine, catalogue)
    engine.dispose()
    return Settings(
        model_dir=bundle_dir,
        database_url=url,
        index_cache_dir=tmp_path / "index-cache",
        _env_file=None,
        **index_settings,
    )


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as client:
        yield client
