"""The service refuses a model whose feature statistics do not fit the catalogue."""

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.catalogue.fit import BundleMisfit, misfit_columns
from app.catalogue.importing import import_catalogue, source_of
from app.catalogue.library import read_library_songs
from app.cli import app as cli
from app.config import Settings
from app.db import open_database
from app.main import create_app
from training.data.features import FEATURE_COLUMNS
from training.data.fma import load_catalogue
from training.library_model import make_library_model


def test_misfit_columns_are_those_whose_mean_is_far_in_training_stds():
    mean, std = np.zeros(518), np.full(518, 2.0)
    features = np.zeros((4, 518))
    features[:, 7] = 30.0  # 15 std away
    features[:, 9] = -19.0  # 9.5 std: within 10
    features[:, 3] = [0, 0, 0, 100]  # mean 25: 12.5 std
    off = misfit_columns(mean=mean, std=std, features=features, max_std=10.0)
    assert off == [("/".join(FEATURE_COLUMNS[7]), 15.0), ("/".join(FEATURE_COLUMNS[3]), 12.5)]


@pytest.fixture
def library_only(tmp_path, library_dir) -> str:
    """A database holding the 8 extracted real clips and nothing else."""
    url = f"sqlite:///{tmp_path / 'mine.db'}"
    engine = open_database(url)
    import_catalogue(engine, load_catalogue(data_dir=library_dir), source=source_of(library_dir))
    engine.dispose()
    return url


def test_a_synthetic_trained_model_is_refused_for_real_extracted_features(
    library_only, bundle_dir, tmp_path
):
    settings = Settings(model_dir=bundle_dir, database_url=library_only, _env_file=None)
    with (
        pytest.raises(BundleMisfit, match=r"rmse/\w+/01 \(\d+ std\)") as refused,
        TestClient(create_app(settings)),
    ):
        pass
    assert "--force" in str(refused.value)
    env = {"MUSICSIM_DATABASE_URL": library_only, "MUSICSIM_MODEL_DIR": str(bundle_dir)}
    result = CliRunner().invoke(cli, ["serve"], env=env | {"COLUMNS": "400"})
    assert result.exit_code == 2 and "does not fit this catalogue" in result.output
    forced = settings.model_copy(update={"serve_misfit_model": True})
    with TestClient(create_app(forced)) as client:
        assert client.get("/health").json()["songs_indexed"] == 8


def test_the_librarys_own_zscore_model_serves_it(library_only, tmp_path):
    engine = open_database(library_only)
    with Session(engine) as session:
        songs = read_library_songs(session, name="mymusic")
    engine.dispose()
    make_library_model(
        features=songs.features,
        artist_ids=songs.artist_ids,
        labelled=songs.labelled,
        out_dir=tmp_path / "model",
    )
    settings = Settings(model_dir=tmp_path / "model", database_url=library_only, _env_file=None)
    with TestClient(create_app(settings)) as client:
        found = client.get(f"/songs/{songs.ids[0]}/similar", params={"k": 7}).json()["results"]
    assert sorted(r["id"] for r in found) == sorted(songs.ids[1:].tolist())
