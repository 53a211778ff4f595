"""With only the core installed (no extras), `musicsim` answers and the service serves features."""

import json
import subprocess
import sys

from paths import ROOT

CORE_ONLY = ROOT / "tests" / "support" / "core_only.py"

SERVE_FEATURES = """
import json, sys
sys.path.insert(0, "tests/support")
from fastapi.testclient import TestClient
from app.config import Settings
from app.main import create_app
settings = Settings(model_dir=sys.argv[1], database_url=sys.argv[2], index_cache_dir=None,
                    _env_file=None)
with TestClient(create_app(settings)) as client:
    song = client.get("/songs", params={"limit": 1}).json()["items"][0]["id"]
    similar = client.get(f"/songs/{song}/similar", params={"k": 3})
    audio = client.post("/songs/audio", files={"file": ("a.wav", b"RIFF", "audio/wav")})
from core_only import EXTRA_MODULES
extras = sorted(m for m, module in sys.modules.items()
                if module is not None and m.split(".")[0] in EXTRA_MODULES)
print(json.dumps({"similar": similar.status_code, "results": len(similar.json()["results"]),
                  "audio": audio.status_code, "audio_detail": audio.json()["detail"],
                  "extras_loaded": extras}))
"""


def core_only(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CORE_ONLY), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_blocker_really_refuses_an_extra():
    result = core_only("-c", "import sklearn")
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr


def test_musicsim_help_answers_without_any_extra():
    result = core_only("-m", "app.cli", "--help")
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "train" in result.stdout


def test_the_service_serves_a_features_catalogue_with_only_the_core(bundle_dir, sqlite_template):
    result = core_only("-c", SERVE_FEATURES, str(bundle_dir), f"sqlite:///{sqlite_template}")
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["similar"] == 200 and answer["results"] == 3
    # the audio route names the extra to install instead of failing with a trace
    assert answer["audio"] == 501 and "musicsim[audio]" in answer["audio_detail"]
    assert answer["extras_loaded"] == []


def test_extract_without_the_audio_extra_names_it(tmp_path):
    result = core_only("-m", "app.cli", "extract", str(tmp_path), "--out", str(tmp_path / "o"))
    assert result.returncode == 2, result.stderr
    assert "pip install 'musicsim[audio]'" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_mined_training_without_the_train_extra_names_it(small_catalogue_dir, tmp_path):
    result = core_only(
        "-m", "app.cli", "train", "--data", str(small_catalogue_dir), "--out", str(tmp_path / "m"),
        "--triplets", "batch-hard", "--epochs", "1",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert "pip install 'musicsim[train]'" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_the_service_modules_import_no_extra(tmp_path):
    code = (
        "import app.main, app.cli, training.artefacts, training.train, training.evaluation.spaces"
    )
    result = core_only("-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
