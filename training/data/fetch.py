"""Downloading FMA's metadata release: resumable, SHA-1 checked, unpacked for the loader.

    >>> report = fetch_fma(out_dir=Path("data/fma"))
    >>> report.extracted      # ['tracks.csv', 'features.csv', 'genres.csv'] in data/fma

The download goes to `fma_metadata.zip.part`; a later call resumes it with an
HTTP Range request. Only a complete file whose SHA-1 matches the published sum
becomes `fma_metadata.zip`, and only a verified zip is unpacked, so a failed
or corrupt download never replaces anything that was verified before.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from training.data import FEATURES_FILE, GENRES_FILE, TRACKS_FILE

# The FMA authors' release (Defferrard et al., ISMIR 2017), see docs/fma-format.md.
FMA_METADATA_URL = "https://os.unil.cloud.switch.ch/fma/fma_metadata.zip"
FMA_METADATA_SHA1 = "f0df49ffe5f2a6008d7dc83c6915b31835dfe733"
ZIP_NAME = "fma_metadata.zip"
PART_SUFFIX = ".part"
REJECTED_SUFFIX = ".rejected"
# What load_catalogue reads; the rest of the release (echonest.csv, ...) is left in the zip.
NEEDED_FILES = (TRACKS_FILE, FEATURES_FILE, GENRES_FILE)
_CHUNK = 1 << 20
_SHA1 = re.compile(r"[0-9a-f]{40}")

# bytes of the file so far, and its full size when the server said it.
ProgressCallback = Callable[[int, int | None], None]
NoteCallback = Callable[[str], None]


class FetchError(Exception):
    """The download or unpacking failed; the message says why and what was kept."""


class ChecksumError(FetchError):
    """The downloaded file is complete but its SHA-1 is not the expected one."""


@dataclass
class FetchReport:
    zip_path: Path
    downloaded: bool  # False when a verified zip was already in place
    resumed_from: int = 0  # bytes of an earlier partial download that were kept
    extracted: list[str] = field(default_factory=list)  # files (re)written into out_dir
    up_to_date: list[str] = field(default_factory=list)  # files already equal to the zip's


def check_sha1(text: str) -> str:
    """A SHA-1 hex digest in lower case, or ValueError naming the problem."""
    digest = text.strip().lower()
    if not _SHA1.fullmatch(digest):
        raise ValueError(f"--sha1 must be 40 hexadecimal digits, got {text!r}")
    return digest


def file_sha1(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def fetch_fma(
    *,
    out_dir: Path,
    url: str = FMA_METADATA_URL,
    sha1: str = FMA_METADATA_SHA1,
    timeout: float = 30.0,
    on_progress: ProgressCallback | None = None,
    on_note: NoteCallback | None = None,
) -> FetchReport:
    """Make sure out_dir holds a verified zip and the CSV files the loader needs."""
    sha1 = check_sha1(sha1)
    note = on_note or (lambda _: None)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot use {out_dir} as the download folder ({exc})") from exc
    zip_path = out_dir / ZIP_NAME
    report = FetchReport(zip_path=zip_path, downloaded=False)
    if zip_path.is_file():
        if file_sha1(zip_path) == sha1:
            note(f"{zip_path} is already there and its SHA-1 matches: not downloading")
            report.extracted, report.up_to_date = extract_needed(zip_path, out_dir=out_dir)
            return report
        # Kept until a verified download replaces it: it may be the user's only copy.
        note(f"{zip_path} does not have SHA-1 {sha1}: downloading it again (keeping it for now)")
    part = zip_path.with_name(ZIP_NAME + PART_SUFFIX)
    report.resumed_from = download(
        url, part=part, timeout=timeout, on_progress=on_progress, on_note=note
    )
    report.downloaded = True
    _accept_if_verified(part, zip_path=zip_path, sha1=sha1, out_dir=out_dir)
    report.extracted, report.up_to_date = extract_needed(zip_path, out_dir=out_dir)
    return report


def _accept_if_verified(part: Path, *, zip_path: Path, sha1: str, out_dir: Path) -> None:
    found = file_sha1(part)
    if found == sha1:
        os.replace(part, zip_path)
        return
    # A complete file with the wrong sum cannot be resumed into the right one: set it
    # aside (not delete it: the expected sum may be the mistake) so the next run starts afresh.
    rejected = zip_path.with_name(ZIP_NAME + REJECTED_SUFFIX)
    os.replace(part, rejected)
    kept = [p.name for p in (zip_path, *(out_dir / n for n in NEEDED_FILES)) if p.is_file()]
    kept_text = ", ".join(kept) if kept else "nothing (there was no earlier verified download)"
    raise ChecksumError(
        f"the downloaded file's SHA-1 is {found}, expected {sha1}; it was set aside as "
        f"{rejected} and nothing was extracted. Left untouched in {out_dir}: {kept_text}. "
        "Run again to download afresh, or check the --url and --sha1 you gave."
    )


def download(
    url: str,
    *,
    part: Path,
    timeout: float,
    on_progress: ProgressCallback | None = None,
    on_note: NoteCallback | None = None,
) -> int:
    """Download url into part, resuming from part's size; returns the bytes resumed from.

    Any failure raises FetchError and leaves part as far as it got, for the next resume.
    """
    note = on_note or (lambda _: None)
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # Nothing left to send: the partial file is already whole; the SHA-1 will tell.
            note(f"the server has no bytes past {have:,}: checking the file as it is")
            return have
        raise FetchError(f"{url}: the server answered {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise FetchError(f"cannot reach {url}: {_reason(exc)}{_kept(part)}") from exc
    with response:
        start, total = _resume_point(response, have=have, note=note)
        _stream(response, part=part, start=start, total=total, url=url, on_progress=on_progress)
    return start


def _resume_point(response, *, have: int, note: NoteCallback) -> tuple[int, int | None]:
    """Where the body starts in the file, and the file's full size if known."""
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status == 206:
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == have:
            size = match.group(2)
            note(f"resuming the partial download at {have:,} bytes")
            return have, int(size) if size.isdigit() else None
        raise FetchError(
            f"the server sent a partial answer for another range "
            f"({response.headers.get('Content-Range')!r}, asked for bytes {have}-)"
        )
    if have:
        note("the server ignored the resume request: downloading the whole file again")
    return 0, length


def _stream(response, *, part: Path, start: int, total: int | None, url: str, on_progress):
    done = start
    if on_progress:
        on_progress(done, total)
    # "r+b" keeps the first `start` bytes; truncate drops anything past them.
    with open(part, "r+b" if start else "wb") as f:
        f.truncate(start)
        f.seek(start)
        while True:
            try:  # a failed write (disk full) stops the download like a failed read
                chunk = response.read(_CHUNK)
                f.write(chunk)
            except (OSError, http.client.HTTPException) as exc:
                f.flush()
                raise FetchError(
                    f"the download from {url} broke off at {done:,} bytes: {_reason(exc)}"
                    f"{_kept(part)}"
                ) from exc
            if not chunk:
                break
            done += len(chunk)
            if on_progress:
                on_progress(done, total)
    if total is not None and done < total:
        raise FetchError(
            f"the server closed the connection at {done:,} of {total:,} bytes{_kept(part)}"
        )


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc) or type(exc).__name__


def _kept(part: Path) -> str:
    if part.is_file() and part.stat().st_size:
        size = part.stat().st_size
        return f"; kept the {size:,} bytes received in {part}: run again to resume"
    return ""


def extract_needed(zip_path: Path, *, out_dir: Path) -> tuple[list[str], list[str]]:
    """Unpack the loader's CSV files from the zip (in any folder of it) into out_dir.

    A file whose size and CRC-32 already equal the zip's copy is left alone; the
    others are written to a temporary name and renamed, so none is ever half-written.
    Returns (files written, files already up to date).
    """
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FetchError(f"{zip_path} is not a readable zip file ({exc})") from exc
    written, current = [], []
    with archive:
        members = _needed_members(archive, zip_path)
        for name, info in members.items():
            target = out_dir / name
            if target.is_file() and _same_content(target, info):
                current.append(name)
                continue
            _extract_member(archive, info, target)
            written.append(name)
    return written, current


def _needed_members(archive: zipfile.ZipFile, zip_path: Path) -> dict[str, zipfile.ZipInfo]:
    found: dict[str, list[zipfile.ZipInfo]] = {name: [] for name in NEEDED_FILES}
    for info in archive.infolist():
        base = info.filename.rsplit("/", 1)[-1]
        if base in found and not info.is_dir():
            found[base].append(info)
    missing = [name for name, infos in found.items() if not infos]
    if missing:
        raise FetchError(f"{zip_path} holds no {', '.join(missing)}: is it FMA's metadata zip?")
    twice = [name for name, infos in found.items() if len(infos) > 1]
    if twice:
        raise FetchError(f"{zip_path} holds more than one {', '.join(twice)}")
    return {name: infos[0] for name, infos in found.items()}


def _same_content(path: Path, info: zipfile.ZipInfo) -> bool:
    if path.stat().st_size != info.file_size:
        return False
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc == info.CRC


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    # Not mkstemp: its files are private (0600); the CSVs get the usual permissions.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out, archive.open(info) as source:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
        os.replace(tmp, target)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FetchError(f"cannot unpack {info.filename} into {target} ({exc})") from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
