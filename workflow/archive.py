"""Reproducible archives: same input files, same bytes, so content hashes name S3 keys."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path
from typing import Iterable, Mapping

# 1980-01-01 is the earliest time a zip entry can carry; tar uses the same for symmetry.
FIXED_EPOCH = 315532800
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".DS_Store"}


def collect(root: Path, prefix: str = "") -> dict[str, Path]:
    """Map archive names (``prefix`` + path relative to ``root``) to files, skipping caches."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not IGNORED_PARTS.intersection(rel.parts) and path.suffix != ".pyc":
            files[prefix + rel.as_posix()] = path
    return files


def tar_gz_bytes(entries: Mapping[str, Path]) -> bytes:
    """A gzip'd tar of ``entries`` with sorted names, fixed mtime/owner/mode and no gzip name."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            data = entries[name].read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), FIXED_EPOCH, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=out, mtime=FIXED_EPOCH, compresslevel=9
    ) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def zip_bytes(entries: Mapping[str, Path]) -> bytes:
    """A deflated zip of ``entries`` with sorted names and fixed timestamps and permissions."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, entries[name].read_bytes(), compresslevel=9)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def names_in(archive: bytes) -> Iterable[str]:
    """Entry names of a tar.gz or zip archive, for tests and checks."""
    if archive[:2] == b"PK":
        return zipfile.ZipFile(io.BytesIO(archive)).namelist()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return tar.getnames()
