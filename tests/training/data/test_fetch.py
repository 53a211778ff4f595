"""`musicsim fetch-fma` against a real HTTP server on loopback serving a small FMA-like zip."""

import hashlib
import io
import re
import socket
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from training.data.fetch import FetchError, extract_needed
from training.data.fma import load_catalogue
from training.data.synthetic.catalogue import write_demo_catalogue

CSV_FILES = ("tracks.csv", "features.csv", "genres.csv")


@dataclass
class Served:
    """What the loopback server sends, and what it saw."""

    payload: bytes = b""
    honour_range: bool = True
    cut_after: int | None = None  # close the connection after this many body bytes, once
    status: int = 200
    ranges: list[str | None] = field(default_factory=list)  # Range header of each request
    body_bytes: int = 0  # body bytes sent over all requests


class FileHandler(BaseHTTPRequestHandler):
    served: Served  # set on a subclass per server

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        served = self.served
        served.ranges.append(self.headers.get("Range"))
        if served.status != 200:
            self.send_error(served.status)
            return
        start, size = 0, len(served.payload)
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and served.honour_range:
            start = int(match.group(1))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        body = served.payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if served.cut_after is not None:
            body, served.cut_after = body[: served.cut_after], None
            self.close_connection = True
        self.wfile.write(body)
        served.body_bytes += len(body)

    def log_message(self, format, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    served = Served()
    handler = type("Handler", (FileHandler,), {"served": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/fma/fma_metadata.zip"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, bytes]:
    """A tiny catalogue zipped as FMA lays out its release, with a file the loader ignores."""
    source = tmp_path_factory.mktemp("fma-release")
    write_demo_catalogue(out_dir=source, n_tracks=200, n_artists=30, seed=5)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in CSV_FILES:
            archive.write(source / name, f"fma_metadata/{name}")
        archive.writestr("fma_metadata/echonest.csv", "track_id,danceability\n2,0.5\n")
        archive.writestr("fma_metadata/README.txt", "not needed by the loader\n")
    return source, buffer.getvalue()


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def fetch(out: Path, url: str, expected: str):
    args = ["fetch-fma", "--out", str(out), "--url", url, "--sha1", expected, "--timeout", "5"]
    result = CliRunner().invoke(cli, args)
    return result, " ".join(result.output.split())  # rich wraps long lines


def assert_extracted_as_released(out: Path, source: Path):
    for name in CSV_FILES:
        assert (out / name).read_bytes() == (source / name).read_bytes(), name


def test_fetch_downloads_verifies_and_extracts_what_the_loader_needs(server, release, tmp_path):
    served, url = server
    source, served.payload = release
    result, text = fetch(tmp_path, url, sha1(served.payload))
    assert result.exit_code == 0, text
    assert (tmp_path / "fma_metadata.zip").read_bytes() == served.payload
    assert not (tmp_path / "fma_metadata.zip.part").exists()
    assert_extracted_as_released(tmp_path, source)
    assert not (tmp_path / "echonest.csv").exists() and not (tmp_path / "fma_metadata").exists()
    catalogue = load_catalogue(data_dir=tmp_path)
    assert len(catalogue.tracks) == len(load_catalogue(data_dir=source).tracks)
    assert served.ranges == [None]


def test_a_verified_zip_already_there_is_not_downloaded_again(server, release, tmp_path):
    served, url = server
    source, served.payload = release
    assert fetch(tmp_path, url, sha1(served.payload))[0].exit_code == 0
    (tmp_path / "genres.csv").write_text("edited by hand\n")
    result, text = fetch(tmp_path, url, sha1(served.payload))
    assert result.exit_code == 0, text
    assert len(served.ranges) == 1  # no second request
    assert "not downloading" in text
    assert_extracted_as_released(tmp_path, source)  # the edited file is restored


def test_a_download_cut_off_midway_is_kept_and_resumed(server, release, tmp_path):
    served, url = server
    source, served.payload = release
    half = len(served.payload) // 2
    served.cut_after = half
    result, text = fetch(tmp_path, url, sha1(served.payload))
    assert result.exit_code == 1
    assert f"closed the connection at {half:,} of {len(served.payload):,} bytes" in text
    assert "run again to resume" in text
    assert (tmp_path / "fma_metadata.zip.part").stat().st_size == half
    assert not (tmp_path / "tracks.csv").exists()

    result, text = fetch(tmp_path, url, sha1(served.payload))
    assert result.exit_code == 0, text
    assert served.ranges == [None, f"bytes={half}-"]
    assert served.body_bytes == len(served.payload)  # the second request sent only the rest
    assert (tmp_path / "fma_metadata.zip").read_bytes() == served.payload
    assert_extracted_as_released(tmp_path, source)


def test_a_partial_file_left_by_another_run_is_resumed(server, release, tmp_path):
    served, url = server
    source, served.payload = release
    third = len(served.payload) // 3
    (tmp_path / "fma_metadata.zip.part").write_bytes(served.payload[:third])
    result, text = fetch(tmp_path, url, sha1(served.payload))
    assert result.exit_code == 0, text
    assert served.ranges == [f"bytes={third}-"]
    assert served.body_bytes == len(served.payload) - third
    assert_extracted_as_released(tmp_path, source)


def test_a_partial_file_that_is_already_whole_is_checked_not_fetched(server, release, tmp_path):
    served, url = server
    source, served.payload = release
    (tmp_path / "fma_metadata.zip.part").write_bytes(served.payload)
    result, text = fetch(tmp_path, url, sha1(served.payload))
    assert result.exit_code == 0, text
    assert served.body_bytes == 0  # the server answered 416: nothing left to send
    assert_extracted_as_released(tmp_path, source)


def test_a_server_that_ignores_range_gets_the_whole_file_again(server, release, tmp_path):
    served, url = server
    source, served.payload = release
    served.honour_range = False
    # Wrong bytes in the partial file: appending the 200 body to them would fail the SHA-1.
    (tmp_path / "fma_metadata.zip.part").write_bytes(b"x" * 1000)
    result, text = fetch(tmp_path, url, sha1(served.payload))
    assert result.exit_code == 0, text
    assert "ignored the resume request" in text
    assert served.ranges == ["bytes=1000-"]
    assert (tmp_path / "fma_metadata.zip").read_bytes() == served.payload
    assert_extracted_as_released(tmp_path, source)


def test_a_corrupt_download_leaves_the_extracted_files_alone(server, release, tmp_path):
    served, url = server
    source, payload = release
    served.payload = payload
    assert fetch(tmp_path, url, sha1(payload))[0].exit_code == 0
    (tmp_path / "fma_metadata.zip").unlink()  # a user who kept only the CSV files
    before = {name: (tmp_path / name).stat().st_mtime_ns for name in CSV_FILES}
    corrupt = bytearray(payload)
    corrupt[len(corrupt) // 2] ^= 0xFF
    served.payload = bytes(corrupt)

    result, text = fetch(tmp_path, url, sha1(payload))
    assert result.exit_code == 1
    assert f"SHA-1 is {sha1(served.payload)}, expected {sha1(payload)}" in text
    assert "tracks.csv, features.csv, genres.csv" in text  # says what it left untouched
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in CSV_FILES} == before
    assert_extracted_as_released(tmp_path, source)
    assert (tmp_path / "fma_metadata.zip.rejected").read_bytes() == served.payload
    assert not (tmp_path / "fma_metadata.zip").exists()
    assert not (tmp_path / "fma_metadata.zip.part").exists()  # the next run starts afresh


def test_a_wrong_sum_never_replaces_a_verified_zip(server, release, tmp_path):
    served, url = server
    source, served.payload = release
    assert fetch(tmp_path, url, sha1(served.payload))[0].exit_code == 0
    wrong = "0" * 40
    result, text = fetch(tmp_path, url, wrong)
    assert result.exit_code == 1
    assert f"expected {wrong}" in text and "fma_metadata.zip, tracks.csv" in text
    assert (tmp_path / "fma_metadata.zip").read_bytes() == served.payload
    assert_extracted_as_released(tmp_path, source)


def test_an_unreachable_server_is_named_and_the_partial_file_kept(tmp_path):
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "fma_metadata.zip.part").write_bytes(b"12345")
    url = f"http://127.0.0.1:{port}/fma_metadata.zip"
    result, text = fetch(tmp_path, url, "0" * 40)
    assert result.exit_code == 1
    assert f"cannot reach {url}" in text and "refused" in text.lower()
    assert "kept the 5 bytes" in text
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert (tmp_path / "fma_metadata.zip.part").read_bytes() == b"12345"


def test_an_http_error_is_reported_with_its_status(server, tmp_path):
    served, url = server
    served.status = 404
    result, text = fetch(tmp_path, url, "0" * 40)
    assert result.exit_code == 1 and "404" in text


def test_a_malformed_sha1_is_refused_before_any_request(server, tmp_path):
    served, url = server
    result, text = fetch(tmp_path, url, "f0df49ff")
    assert result.exit_code == 2 and "40 hexadecimal digits" in text
    assert served.ranges == []


def test_a_zip_without_the_loader_files_is_named(tmp_path):
    path = tmp_path / "fma_metadata.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("fma_metadata/tracks.csv", "x")
    with pytest.raises(FetchError, match="holds no features.csv, genres.csv"):
        extract_needed(path, out_dir=tmp_path)


def test_an_out_path_that_is_a_file_is_named(server, tmp_path):
    served, url = server
    taken = tmp_path / "taken"
    taken.write_text("a file, not a folder")
    result, text = fetch(taken, url, "0" * 40)
    assert result.exit_code == 1 and f"cannot use {taken} as the download folder" in text
    assert taken.read_text() == "a file, not a folder" and served.ranges == []
