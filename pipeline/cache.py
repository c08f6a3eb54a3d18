"""The teacher cache: the one place the HDF5 layout lives (DESIGN.md "The teacher cache").

One file per teacher, each the output of its own labelling stage (``paths.teachers``): the
convolutional ensemble (``cache/teacher-labels.h5``, stage ``ensemble-labels``) and the same
network's single crop (``cache/base-labels.h5``, stage ``base-labels``; s = 1, p = 0, A = 1).
A student reads any set of them (:mod:`pipeline.teachers`). Layout of each::

    /keys              (N,) bytes (UTF-8), sorted; row i belongs to keys[i]
    /views             (N, R, 6) float32   the R views of each image (:mod:`pipeline.views`),
                                           columns named in its attribute ``columns`` (flip,
                                           angle_ccw, shift_x, shift_y, scale, photometric_seed);
                                           view 0: the plain crop
    /heads/bK/prob     (N, R, 3, q) float16  eq. 6 on each view: mean softmax of the ensemble,
                                           per angle; the heads of ``ensemble_labels.heads``
                                           (default b1 only: what a student reads, < 1 KB per view)
    /heads/bK/centres  (q,) float64        bin centres of the head (pipeline.bins)
    /expected          (N, R, 3) float32   eq. 2 on the fp32 ensemble distribution of the
                                           smallest-bin head (b1 for the teacher), per view
    /boxes             (N, 4) float32      the box the views are cut from (x1, y1, x2, y2)
    attrs              schema_version, teacher (its name: ensemble, base), role (what it is),
                       label_kind
                       ("rvc": RvC distributions, and their angles in /expected),
                       teacher_sha256, manifest_sha256, samples_sha256, s, p, A,
                       input_size, bin_sizes, views (R), views_config (the ``views``
                       block, JSON), precision, angle_order, convention,
                       code_version, complete (last)

Every dataset is stored in chunks of CHUNK_ROWS rows (the distributions: of one view each, so
a student's read of one view decompresses no other) with HDF5's fletcher32 checksum (the
distributions also byte-shuffled and gzip-compressed), so a
flipped byte is an error on read, never a silent wrong label; rows are checked to be
probability distributions when read (:func:`check_distributions`), and
:meth:`TeacherCache.verify` (``pipeline inspect-cache --verify``) checks a whole file.

Writing (:class:`CacheBuilder`): chunks of rows are labelled into ``<name>.h5.parts/part-K.npz``
(each written atomically), so a killed job resumes from its last finished chunk. Parts are
reused only by a job with the same identity (every provenance attribute: teacher, samples with
their boxes and image bytes, s, p, input size, views, precision; the keys; the chunk size). The
parts are merged into one HDF5 image in memory, written beside the file and renamed when
complete (:func:`pipeline.files.atomic_write_bytes`). The merge is a pure
function of the parts (fixed layout and chunking, no timestamps, pinned libver), so the same inputs give the same bytes, whether labelled in one process, resumed,
or sharded over ranks. A ``<name>.h5.lock`` (flock) refuses a second writer.

Reading (:func:`open_cache`): checks the file against what it is used with and opens the
HDF5 file lazily, once per process, so DataLoader workers never load the whole file.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import h5py
import numpy as np

from . import __version__, bins
from .ensemble import num_windows
from .errors import PipelineError
from .files import atomic_write_bytes
from .pose import ANGLE_NAMES, CONVENTION
from .views import VIEW_COLUMNS, VIEW_DTYPE

SCHEMA_VERSION = 4           # 3: teacher name, label kind (issue 15); 4: R views per image (issue 23)
CHUNK_ROWS = 256             # rows per HDF5 chunk (and per fletcher32 checksum)
SUM_TOLERANCE = 0.02         # |sum - 1| allowed of a stored float16 distribution row
LIBVER = ("v110", "v110")
PROB_DTYPE = np.float16
GZIP_LEVEL = 4
RERUN = "re-run its labelling stage (ensemble-labels, base-labels)"
RELABEL = ("relabel it with this version: `dvc repro` (or `pipeline run-stage ensemble-labels` / "
           "`pipeline run-stage base-labels`, with `--set ensemble_labels.force=true` to overwrite)")
LABEL_KINDS = ("rvc",)       # what a labelling stage writes; a reader refuses any other kind


class CacheError(PipelineError):
    pass


@dataclass(frozen=True)
class CacheMeta:
    """Provenance stored as root attributes; everything a reader must agree with."""
    teacher_sha256: str
    manifest_sha256: str
    s: int
    p: int
    input_size: tuple[int, int]
    bin_sizes: tuple[int, ...]
    samples_sha256: str = ""        # keys, boxes and image bytes labelled (pipeline.data.samples_sha256)
    views: int = 1                  # R views per image (pipeline.views)
    views_config: str = ""          # the ``views`` block they were drawn by (ViewsConfig.describe())
    teacher: str = "ensemble"       # the teacher's name (paths.teachers): ensemble | base | ...
    role: str = ""                  # what the teacher is, in words (the labelling block's `role`)
    label_kind: str = "rvc"         # RvC distributions per head (/heads) and their angles (/expected)
    precision: str = "fp32"         # of the teacher's forward passes: fp32 | bf16
    angle_order: str = ",".join(ANGLE_NAMES)
    convention: str = CONVENTION
    code_version: str = __version__
    schema_version: int = SCHEMA_VERSION

    @property
    def A(self) -> int:
        return num_windows(self.s, self.p)

    @property
    def expected_bin_size(self) -> int:
        return min(self.bin_sizes)

    def attrs(self) -> dict:
        """Root attributes in a fixed order (the file tracks attribute order)."""
        return {"schema_version": self.schema_version, "teacher": self.teacher, "role": self.role,
                "label_kind": self.label_kind, "teacher_sha256": self.teacher_sha256,
                "manifest_sha256": self.manifest_sha256, "samples_sha256": self.samples_sha256,
                "s": self.s, "p": self.p, "A": self.A,
                "input_size": np.array(self.input_size, dtype=np.int64),
                "bin_sizes": np.array(self.bin_sizes, dtype=np.int64), "views": self.views,
                "views_config": self.views_config,
                "precision": self.precision,
                "angle_order": self.angle_order, "convention": self.convention,
                "code_version": self.code_version}

    @classmethod
    def from_attrs(cls, attrs: Mapping, where: str) -> "CacheMeta":
        try:
            return cls(teacher_sha256=str(attrs["teacher_sha256"]),
                       manifest_sha256=str(attrs["manifest_sha256"]),
                       samples_sha256=str(attrs["samples_sha256"]),
                       teacher=str(attrs["teacher"]), role=str(attrs["role"]),
                       label_kind=str(attrs["label_kind"]),
                       s=int(attrs["s"]), p=int(attrs["p"]),
                       input_size=tuple(int(v) for v in attrs["input_size"]),
                       bin_sizes=tuple(int(v) for v in attrs["bin_sizes"]),
                       views=int(attrs["views"]), views_config=str(attrs["views_config"]),
                       precision=str(attrs["precision"]),
                       angle_order=str(attrs["angle_order"]), convention=str(attrs["convention"]),
                       code_version=str(attrs["code_version"]),
                       schema_version=int(attrs["schema_version"]))
        except KeyError as exc:
            raise CacheError(f"{where}: attribute {exc} is missing (not a teacher cache?)") from None


# --- writing ---------------------------------------------------------------------------

def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def keys_sha256(keys: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


class CacheBuilder:
    """Chunked, resumable, locked writer of one cache file.

    ``with CacheBuilder(path, meta, keys, chunk_size) as builder:`` then, for each
    ``index in builder.pending()``, label ``builder.chunk_keys(index)`` and call
    :meth:`write_part`; finally :meth:`finish`. With ``lock=False`` (other ranks of a sharded
    job whose rank 0 holds the lock) the builder only writes parts.
    """

    def __init__(self, path: str | Path, meta: CacheMeta, keys: Sequence[str], chunk_size: int,
                 lock: bool = True):
        if chunk_size < 1:
            raise CacheError(f"{path}: chunk size must be >= 1, got {chunk_size}")
        keys = list(keys)
        if keys != sorted(keys) or len(set(keys)) != len(keys):
            raise CacheError(f"{path}: keys must be unique and sorted")
        self.path = Path(path)
        self.meta = meta
        self.keys = keys
        self.chunk_size = chunk_size
        self.work_dir = self.path.with_name(self.path.name + ".parts")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._use_lock = lock
        self._lock_fh = None

    # locking and the work dir
    def __enter__(self) -> "CacheBuilder":
        if self._use_lock:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.lock_path, "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise CacheError(f"{self.path}: another process is writing this cache "
                             f"(lock {self.lock_path} is held); wait for it or stop it") from None
        self._lock_fh = fh
        self._prepare_work_dir()

    def release(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def _work_dir_identity(self) -> bytes:
        ident = {"meta": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                          for k, v in self.meta.attrs().items()},
                 "keys_sha256": keys_sha256(self.keys), "chunk_size": self.chunk_size}
        return json.dumps(ident, sort_keys=True).encode()

    def _prepare_work_dir(self) -> None:
        """Keep finished parts only if they were made for exactly this job; else start over."""
        ident_path = self.work_dir / "job.json"
        ident = self._work_dir_identity()
        if self.work_dir.exists() and (not ident_path.is_file() or ident_path.read_bytes() != ident):
            print(f"{self.work_dir}: parts belong to another job (params, teacher or manifest "
                  "changed); starting over")
            shutil.rmtree(self.work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if not ident_path.is_file():
            atomic_write_bytes(ident_path, ident)
        for i in range(self.num_chunks):  # a damaged part would otherwise count as labelled
            if self.part_path(i).is_file():
                self.read_part(i)

    # chunks
    @property
    def num_chunks(self) -> int:
        return -(-len(self.keys) // self.chunk_size)

    def chunk_keys(self, index: int) -> list[str]:
        return self.keys[index * self.chunk_size:(index + 1) * self.chunk_size]

    def part_path(self, index: int) -> Path:
        return self.work_dir / f"part-{index:06d}.npz"

    def pending(self, rank: int = 0, world_size: int = 1) -> list[int]:
        """Chunks not yet written; a rank of ``world_size`` takes every world_size-th chunk."""
        return [i for i in range(rank, self.num_chunks, world_size)
                if not self.part_path(i).is_file()]

    def read_part(self, index: int) -> dict[str, np.ndarray]:
        path = self.part_path(index)
        n, r = len(self.chunk_keys(index)), self.meta.views
        shapes = {"boxes": (4,), "views": (r, len(VIEW_COLUMNS)), "expected": (r, 3)}
        shapes.update({f"prob_{bins.head_name(b)}": (r, 3, bins.num_bins(b)) for b in self.meta.bin_sizes})
        try:
            with np.load(path, allow_pickle=False) as data:
                part = {k: data[k] for k in data.files}
        except Exception as exc:  # zipfile, OSError, ValueError, EOFError: all mean damaged
            raise CacheError(f"{path}: unreadable labelling part ({type(exc).__name__}: {exc}); "
                             "delete it and rerun to label its chunk again") from None
        got = {k: v.shape for k, v in part.items()}
        if got != {k: (n, *shape) for k, shape in shapes.items()}:
            raise CacheError(f"{path}: labelling part has arrays {got}, expected {n} rows of "
                             f"{shapes}; delete it and rerun to label its chunk again")
        return part

    def write_part(self, index: int, boxes: np.ndarray, views: np.ndarray,
                   probs: Mapping[str, np.ndarray]) -> None:
        """Store one finished chunk: ``views`` (n, R, len(VIEW_COLUMNS)) the views labelled, ``probs[head]``
        (n, R, 3, q) float32 ensemble distributions of each view."""
        n, r = len(self.chunk_keys(index)), self.meta.views
        arrays = {"boxes": np.asarray(boxes, dtype=np.float32), "views": np.asarray(views, dtype=VIEW_DTYPE)}
        want = {"boxes": (n, 4), "views": (n, r, len(VIEW_COLUMNS))}
        for b in self.meta.bin_sizes:
            head = bins.head_name(b)
            arrays[f"prob_{head}"] = np.asarray(probs[head], dtype=np.float32)
            want[f"prob_{head}"] = (n, r, 3, bins.num_bins(b))
        for name, shape in want.items():
            if arrays[name].shape != shape:
                raise CacheError(f"{self.path}: chunk {index}: {name} shape {arrays[name].shape} != {shape}")
        for b in self.meta.bin_sizes:
            arrays[f"prob_{bins.head_name(b)}"] = arrays[f"prob_{bins.head_name(b)}"].astype(PROB_DTYPE)
        b = self.meta.expected_bin_size
        # eq. 2 on the full-precision ensemble distribution
        arrays["expected"] = bins.expected_angle(probs[bins.head_name(b)], b).astype(np.float32)
        atomic_write_bytes(self.part_path(index), _npz_bytes(**arrays))

    def finish(self) -> Path:
        """Merge all parts into the cache file (atomically) and remove the work dir."""
        missing = [i for i in range(self.num_chunks) if not self.part_path(i).is_file()]
        if missing:
            raise CacheError(f"{self.path}: cannot merge, {len(missing)} chunks are not labelled "
                             f"yet (e.g. {missing[:3]})")
        parts = [self.read_part(i) for i in range(self.num_chunks)]
        merged = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
        write_cache(self.path, self.meta, self.keys, merged["boxes"], merged["views"], merged["expected"],
                    {bins.head_name(b): merged[f"prob_{bins.head_name(b)}"]
                     for b in self.meta.bin_sizes})
        shutil.rmtree(self.work_dir)
        return self.path


def write_cache(path: str | Path, meta: CacheMeta, keys: Sequence[str], boxes: np.ndarray, views: np.ndarray,
                expected: np.ndarray, probs: Mapping[str, np.ndarray], compress: bool = True) -> None:
    """Write the whole file (built in memory) beside ``path`` then rename; ``complete`` is
    written last. A failed write (disk full) leaves nothing behind and raises a WriteError
    naming ``path``.
    ``compress=False``: the distributions uncompressed (the benchmark's comparison)."""
    views = np.asarray(views, VIEW_DTYPE)
    if views.shape != (len(keys), meta.views, len(VIEW_COLUMNS)):
        raise CacheError(f"{path}: views of shape {views.shape}, expected {(len(keys), meta.views, len(VIEW_COLUMNS))} "
                         f"({','.join(VIEW_COLUMNS)})")
    encoded = [k.encode("utf-8") for k in keys]
    width = max((len(k) for k in encoded), default=1)

    def dataset(parent, name, data, compress=False, per_view=False):
        data = np.asarray(data)
        chunks = (min(CHUNK_ROWS, max(len(data), 1)), *data.shape[1:])
        if per_view:   # (N, R, 3, q): a chunk holds one view of CHUNK_ROWS images
            chunks = (chunks[0], 1, *chunks[2:])
        # the distributions: byte shuffle + gzip per chunk (-20 % bytes; a random-row read costs
        # about twice as long, still tens of microseconds: `pipeline bench labeling`); zlib
        # output is a pure function of its input
        filters = dict(compression="gzip", compression_opts=GZIP_LEVEL, shuffle=True) if compress else {}
        parent.create_dataset(name, data=data, chunks=chunks, fletcher32=True, **filters)

    # built in memory, then written by the project's atomic writer: HDF5 never meets a full disk
    # (a failed flush inside HDF5 leaves the library with an open file that crashes Python at exit)
    buf = io.BytesIO()
    with h5py.File(buf, "w", libver=LIBVER, track_order=True) as f:
        dataset(f, "keys", np.array(encoded, dtype=f"S{width}"))
        dataset(f, "views", views)
        f["views"].attrs["columns"] = ",".join(VIEW_COLUMNS)
        heads = f.create_group("heads", track_order=True)
        for b in meta.bin_sizes:
            group = heads.create_group(bins.head_name(b), track_order=True)
            dataset(group, "prob", np.asarray(probs[bins.head_name(b)], PROB_DTYPE), compress=compress,
                    per_view=True)
            dataset(group, "centres", bins.centres(b))
        dataset(f, "expected", np.asarray(expected, np.float32))
        dataset(f, "boxes", np.asarray(boxes, np.float32))
        for name, value in meta.attrs().items():
            f.attrs[name] = value
        f.attrs["complete"] = True
    atomic_write_bytes(path, buf.getvalue())


# --- reading ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Expect:
    """What a reader requires of a cache; None = not checked."""
    manifest_sha256: Optional[str] = None
    keys: Optional[Sequence[str]] = None          # every one must be in the cache
    bin_sizes: Optional[Sequence[int]] = None     # heads that must be present
    teacher_sha256: Optional[str] = None
    s: Optional[int] = None
    p: Optional[int] = None
    input_size: Optional[tuple[int, int]] = None
    samples_sha256: Optional[str] = None          # boxes and image bytes the rows were made from
    teacher: Optional[str] = None                 # the teacher's name (attrs ``teacher``)


def check_distributions(prob: np.ndarray, where: str, first_row: int = 0) -> None:
    """``prob`` (n, R, 3, q): every distribution finite, non-negative and summing to 1 (within
    SUM_TOLERANCE, for float16 storage); otherwise a CacheError naming ``where``, the row and
    the view."""
    prob = np.asarray(prob, dtype=np.float32)
    sums = prob.sum(axis=-1)
    bad = ~np.isfinite(prob).all(axis=-1) | (prob < 0).any(axis=-1) | (np.abs(sums - 1) > SUM_TOLERANCE)
    found = np.argwhere(bad.any(axis=-1))
    if len(found):
        r, v = found[0]
        raise CacheError(f"{where}: {len(found)} views are not probability distributions, e.g. row "
                         f"{first_row + r} view {v} (sums {np.round(sums[r, v], 4).tolist()}); the file "
                         "is damaged: " + RERUN)


class TeacherCache:
    """A checked cache. Row access opens the HDF5 file lazily, once per process (pickles
    without the handle, so each DataLoader worker opens its own)."""

    def __init__(self, path: Path, meta: CacheMeta, keys: list[str]):
        self.path = path
        self.meta = meta
        self.keys = keys
        self.index = {k: i for i, k in enumerate(keys)}
        self._file = None
        self._pid = None
        self._datasets: dict[str, h5py.Dataset] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = state["_pid"] = None
        state["_datasets"] = {}
        return state

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._datasets = {}
        return self._file

    def _dataset(self, name: str) -> h5py.Dataset:
        """The open dataset ``name`` (opening one costs ~10x a row read: kept per process)."""
        f = self._h5()
        if name not in self._datasets:
            self._datasets[name] = f[name]
        return self._datasets[name]

    def row(self, key: str) -> int:
        try:
            return self.index[key]
        except KeyError:
            raise CacheError(f"{self.path}: no row for key {key!r}") from None

    def _read(self, name: str, rows=slice(None)) -> np.ndarray:
        """Rows of a dataset; a checksum failure (a damaged chunk) is a CacheError."""
        try:
            return self._dataset(name)[rows]
        except OSError as exc:
            raise CacheError(f"{self.path}: /{name} is damaged ({exc}); " + RERUN) from None

    def probs(self, key: str, bin_size: int = 1, view: int = 0) -> np.ndarray:
        """(3, q) float32 ensemble distribution of one view of a sample for the head ``bK`` (checked)."""
        head = bins.head_name(bin_size)
        if bin_size not in self.meta.bin_sizes:
            raise CacheError(f"{self.path}: no head {head} (has {self.meta.bin_sizes})")
        row = self.row(key)
        prob = self._read(f"heads/{head}/prob", (row, self._view(view))).astype(np.float32)
        check_distributions(prob[None, None], f"{self.path}: heads/{head}/prob, key {key!r} view {view}", row)
        return prob

    def expected(self, key: str, view: int = 0) -> np.ndarray:
        """(3,) the teacher's angles (eq. 2) on one view of a sample."""
        return self._read("expected", (self.row(key), self._view(view)))

    def box(self, key: str) -> np.ndarray:
        return self._read("boxes", self.row(key))

    def views(self, rows=slice(None)) -> np.ndarray:
        """(n, R, 6) view parameters (columns :data:`pipeline.views.VIEW_COLUMNS`)."""
        return self._read("views", rows)

    def _view(self, view: int) -> int:
        if not 0 <= view < self.meta.views:
            raise CacheError(f"{self.path}: no view {view} (the cache has {self.meta.views} per image)")
        return view

    def verify(self, bin_sizes: Optional[Sequence[int]] = None) -> None:
        """Read every row of the heads (all, or ``bin_sizes``), /expected and /boxes, chunk by
        chunk: checksums, distributions, finite angles and boxes. Raises CacheError."""
        n = len(self.keys)
        for b in self.meta.bin_sizes if bin_sizes is None else bin_sizes:
            name = f"heads/{bins.head_name(b)}/prob"
            for lo in range(0, n, CHUNK_ROWS):
                check_distributions(self._read(name, slice(lo, lo + CHUNK_ROWS)), f"{self.path}: {name}", lo)
        for name in ("expected", "boxes", "views"):
            values = self._read(name)
            if not np.isfinite(values).all():
                row = int(np.argwhere(~np.isfinite(values))[0][0])
                raise CacheError(f"{self.path}: /{name} row {row} is not finite; " + RERUN)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


STALE_CAUSE = {"manifest_sha256": "manifest", "teacher_sha256": "teacher checkpoint",
               "samples_sha256": "images or boxes", "s": "stride s", "p": "padding p"}


def _mismatch(path, what, got, want) -> CacheError:
    return CacheError(f"{path}: {what} mismatch: cache has {got!r}, expected {want!r}")


def open_cache(path: str | Path, expect: Optional[Expect] = None) -> TeacherCache:
    """Open and check a cache; every mismatch is an error naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        hint = " (an interrupted job: rerun it to resume)" if path.with_name(
            path.name + ".parts").exists() else " (run the ensemble-labels stage)"
        raise CacheError(f"{path}: teacher cache not found{hint}")
    try:
        with h5py.File(path, "r") as f:
            if not bool(f.attrs.get("complete", False)):
                raise CacheError(f"{path}: incomplete cache file (no 'complete' attribute)")
            version = int(f.attrs.get("schema_version", -1))
            if version != SCHEMA_VERSION:
                older = " (one view per image, before issue 23)" if version == 3 else ""
                raise CacheError(f"{path}: cache schema {version}{older}; this version reads schema "
                                 f"{SCHEMA_VERSION} (R views per image): " + RELABEL)
            meta = CacheMeta.from_attrs(f.attrs, str(path))
            keys = [k.decode("utf-8") for k in f["keys"][()]]
            n, r = len(keys), meta.views
            columns = f["views"].attrs.get("columns")
            if columns != ",".join(VIEW_COLUMNS) or f["views"].shape != (n, r, len(VIEW_COLUMNS)):
                raise CacheError(f"{path}: /views has shape {f['views'].shape} and columns {columns!r}, "
                                 f"expected {(n, r, len(VIEW_COLUMNS))} and {','.join(VIEW_COLUMNS)!r}")
            for b in meta.bin_sizes:
                name = f"heads/{bins.head_name(b)}"
                if name not in f:
                    raise CacheError(f"{path}: attrs list bin size {b} but {name} is missing")
                if not np.array_equal(f[f"{name}/centres"][()], bins.centres(b)):
                    raise _mismatch(path, f"{name}/centres", "other bins", "pipeline.bins")
                if f[f"{name}/prob"].shape != (n, r, 3, bins.num_bins(b)):
                    raise CacheError(f"{path}: {name}/prob has shape {f[f'{name}/prob'].shape}, "
                                     f"expected {(n, r, 3, bins.num_bins(b))}")
    except OSError as exc:
        raise CacheError(f"{path}: not a readable HDF5 file ({exc})") from None
    if keys != sorted(keys):
        raise CacheError(f"{path}: /keys are not sorted")
    if meta.angle_order != ",".join(ANGLE_NAMES):
        raise _mismatch(path, "angle_order", meta.angle_order, ",".join(ANGLE_NAMES))
    if meta.convention != CONVENTION:
        raise _mismatch(path, "convention", meta.convention, CONVENTION)
    if meta.label_kind not in LABEL_KINDS:
        raise CacheError(f"{path}: label_kind {meta.label_kind!r} is not one this version reads {LABEL_KINDS}")
    expect = expect or Expect()
    if expect.teacher is not None and meta.teacher != expect.teacher:
        raise CacheError(f"{_mismatch(path, 'teacher', meta.teacher, expect.teacher)} (paths.teachers "
                         "names another teacher's file)")
    for name in ("manifest_sha256", "teacher_sha256", "samples_sha256", "s", "p"):
        want = getattr(expect, name)
        if want is not None and getattr(meta, name) != want:
            raise CacheError(f"{_mismatch(path, name, getattr(meta, name), want)} (stale cache: the "
                             f"{STALE_CAUSE[name]} changed since it was labelled; re-run its labelling stage)")
    if expect.input_size is not None and meta.input_size != tuple(expect.input_size):
        raise _mismatch(path, "input_size", meta.input_size, tuple(expect.input_size))
    if expect.bin_sizes is not None:
        absent = sorted(set(expect.bin_sizes) - set(meta.bin_sizes))
        if absent:
            raise CacheError(f"{path}: heads {[bins.head_name(b) for b in absent]} are missing "
                             f"(cache has {list(meta.bin_sizes)})")
    if expect.keys is not None:
        have = set(keys)
        absent = [k for k in expect.keys if k not in have]
        if absent:
            raise CacheError(f"{path}: {len(absent)} samples have no teacher labels, e.g. "
                             f"{absent[:3]} (stale cache? re-run its labelling stage)")
    return TeacherCache(path, meta, keys)
