"""Files that are either whole or absent: atomic writes, and the content hashes used as provenance.

Every output of the pipeline is written to a temporary file beside its destination and renamed
into place, so a reader never sees half a file. When the write fails (disk full, file-size
limit, I/O error) the temporary file is removed and the error names the destination.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

from .errors import PipelineError


class WriteError(PipelineError):
    pass


def output_folder(path: str | Path) -> Path:
    """``path`` as a folder, created with its parents if missing; a :class:`WriteError` naming it
    when it cannot be (a file is in the way, no permission)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "a file is in the way" if isinstance(exc, (FileExistsError, NotADirectoryError)) else exc.strerror or exc
        raise WriteError(f"{path}: cannot create this folder ({why}); nothing was written") from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``,
    on any error it is removed (OSError becomes a :class:`WriteError` naming ``path``)."""
    path = Path(path)
    output_folder(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"{path}: could not write ({exc.strerror or exc}); nothing was written") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path`` whole (the
    old folder is moved aside, then removed), on any error it is removed and ``path`` is kept."""
    path = Path(path)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    for leftover in (tmp, old):            # of an interrupted run
        if leftover.exists():
            shutil.rmtree(leftover)
    output_folder(tmp)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, data) -> None:
    """Deterministic JSON (sorted keys, fixed indent, trailing newline), written atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def read_text(path: str | Path, error: type[PipelineError], missing: str) -> str:
    """The UTF-8 text of an input file; ``error`` naming it when it is missing (saying
    ``missing``), not a readable file, or not UTF-8 text."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc})") from None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
