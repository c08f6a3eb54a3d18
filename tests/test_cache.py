import hashlib
import pickle
import time

import h5py
import numpy as np
import pytest

from pipeline import bins
from pipeline.cache import CacheBuilder, CacheError, CacheMeta, Expect, open_cache, write_cache
from pipeline.ensemble import num_windows
from pipeline.views import ViewsConfig, draw_views

KEYS = ["300W_LP/a_1", "300W_LP/a_2", "300W_LP/b_1", "BIWI/01/f_1", "BIWI/01/f_2"]
VIEWS = ViewsConfig(count=2, box_shift=0.05)   # R = 2: the plain crop and one drawn view


def _meta(**kw):
    base = dict(teacher_sha256="t" * 64, manifest_sha256="m" * 64, s=2, p=4,
                input_size=(16, 16), bin_sizes=(1, 2), views=VIEWS.count, views_config=VIEWS.describe())
    base.update(kw)
    return CacheMeta(**base)


def _probs(n, seed=0, r=VIEWS.count):
    rng = np.random.default_rng(seed)
    out = {}
    for b in (1, 2):
        raw = rng.random((n, r, 3, bins.num_bins(b)))
        out[bins.head_name(b)] = (raw / raw.sum(-1, keepdims=True)).astype(np.float32)
    return out


def _views(keys=KEYS):
    return draw_views(VIEWS, keys)


def _build(path, chunk_size=2, meta=None):
    probs, views = _probs(len(KEYS)), _views()
    boxes = np.arange(len(KEYS) * 4, dtype=np.float32).reshape(-1, 4)
    with CacheBuilder(path, meta or _meta(), KEYS, chunk_size) as builder:
        for c in builder.pending():
            rows = slice(c * chunk_size, (c + 1) * chunk_size)
            builder.write_part(c, boxes[rows], views[rows], {k: v[rows] for k, v in probs.items()})
        builder.finish()
    return probs, boxes


def _write(path, probs, n=len(KEYS), meta=None):
    write_cache(path, meta or _meta(), KEYS[:n], np.zeros((n, 4)), _views(KEYS[:n]), np.zeros((n, VIEWS.count, 3)),
                probs)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_layout_dtypes_and_attrs(tmp_path):
    path = tmp_path / "t.h5"
    probs, boxes = _build(path)
    with h5py.File(path, "r") as f:
        assert [k.decode() for k in f["keys"][()]] == KEYS
        assert f["heads/b1/prob"].shape == (5, 2, 3, 198) and f["heads/b1/prob"].dtype == np.float16
        assert f["heads/b1/prob"].chunks == (5, 1, 3, 198)   # one view per chunk: a read decompresses no other
        assert f["heads/b2/prob"].shape == (5, 2, 3, 99)
        np.testing.assert_array_equal(f["heads/b1/centres"][()], bins.centres(1))
        assert f["expected"].dtype == np.float32 and f["boxes"].dtype == np.float32
        assert f["expected"].shape == (5, 2, 3)
        np.testing.assert_allclose(f["expected"][()], bins.expected_angle(probs["b1"], 1), atol=1e-4)
        np.testing.assert_array_equal(f["boxes"][()], boxes)
        assert f["views"].shape == (5, 2, 6)
        assert f["views"].attrs["columns"] == "flip,angle_ccw,shift_x,shift_y,scale,photometric_seed"
        np.testing.assert_array_equal(f["views"][()], _views())
        np.testing.assert_array_equal(f["views"][:, 0], [[0, 0, 0, 0, 1, -1]] * 5)   # view 0: the plain crop
        attrs = dict(f.attrs)
        assert attrs["A"] == 25 and attrs["s"] == 2 and attrs["p"] == 4 and attrs["views"] == 2
        assert attrs["views_config"] == VIEWS.describe()
        assert attrs["angle_order"] == "pitch,yaw,roll" and attrs["complete"]
        assert attrs["teacher"] == "ensemble" and attrs["label_kind"] == "rvc" and attrs["schema_version"] == 4
        assert list(attrs)[:4] == ["schema_version", "teacher", "role", "label_kind"]
        assert not any("time" in k or "date" in k for k in attrs)
        assert list(f.attrs)[-1] == "complete"
    assert not (tmp_path / "t.h5.parts").exists() and not (tmp_path / "t.h5.partial").exists()


def test_same_inputs_same_bytes_whatever_the_chunking(tmp_path):
    _build(tmp_path / "a.h5", chunk_size=2)
    time.sleep(1.1)  # a timestamp anywhere in the file would now differ
    _build(tmp_path / "b.h5", chunk_size=3)
    assert _sha(tmp_path / "a.h5") == _sha(tmp_path / "b.h5")


def test_reader_rows_and_lazy_pickling(tmp_path):
    path = tmp_path / "t.h5"
    probs, boxes = _build(path)
    cache = open_cache(path, Expect(manifest_sha256="m" * 64, keys=KEYS[:2], bin_sizes=(1,)))
    assert len(cache) == 5 and cache.meta.A == 25 == num_windows(cache.meta.s, cache.meta.p)
    np.testing.assert_allclose(cache.probs("BIWI/01/f_1", 2), probs["b2"][3, 0], atol=1e-3)
    np.testing.assert_allclose(cache.probs("BIWI/01/f_1", 2, view=1), probs["b2"][3, 1], atol=1e-3)
    np.testing.assert_allclose(cache.expected("BIWI/01/f_1", 1), bins.expected_angle(probs["b1"][3, 1], 1), atol=1e-4)
    np.testing.assert_array_equal(cache.views(3), _views()[3])
    np.testing.assert_array_equal(cache.box("300W_LP/a_2"), boxes[1])
    with pytest.raises(CacheError, match="no view 2 .the cache has 2 per image"):
        cache.probs("BIWI/01/f_1", 1, view=2)
    clone = pickle.loads(pickle.dumps(cache))  # what a DataLoader worker receives
    assert clone._file is None
    np.testing.assert_array_equal(clone.probs("300W_LP/a_1"), cache.probs("300W_LP/a_1"))
    with pytest.raises(CacheError, match="no row for key 'nope'"):
        cache.row("nope")


@pytest.mark.parametrize("expect,message", [
    (Expect(manifest_sha256="x" * 64), "manifest_sha256 mismatch"),
    (Expect(teacher_sha256="y" * 64), "teacher_sha256 mismatch"),
    (Expect(s=5), "s mismatch"),
    (Expect(teacher="base"), "teacher mismatch: cache has 'ensemble', expected 'base'"),
    (Expect(bin_sizes=(1, 3)), r"heads \['b3'\] are missing"),
    (Expect(keys=["300W_LP/a_1", "AFLW/zz"]), "1 samples have no teacher labels"),
])
def test_reader_names_the_mismatch(tmp_path, expect, message):
    path = tmp_path / "t.h5"
    _build(path)
    with pytest.raises(CacheError, match=message) as info:
        open_cache(path, expect)
    assert str(path) in str(info.value)


def test_reader_refuses_other_schema_convention_bins_and_incomplete(tmp_path):
    path = tmp_path / "t.h5"
    _build(path)
    for attr, value, message in [("schema_version", 99, "cache schema 99; this version reads schema 4"),
                                 ("schema_version", 3, r"cache schema 3 \(one view per image, before issue 23\); "
                                                       r"this version reads schema 4 .* relabel it with this version: "
                                                       r"`dvc repro`"),
                                 ("convention", "hopenet", "convention mismatch"),
                                 ("label_kind", "heatmap", "label_kind 'heatmap' is not one this version reads"),
                                 ("complete", False, "incomplete")]:
        copy = tmp_path / f"{attr}.h5"
        copy.write_bytes(path.read_bytes())
        with h5py.File(copy, "r+") as f:
            f.attrs[attr] = value
        with pytest.raises(CacheError, match=message):
            open_cache(copy)
    with h5py.File(path, "r+") as f:
        f["heads/b1/centres"][0] = 0.0
    with pytest.raises(CacheError, match="heads/b1/centres mismatch"):
        open_cache(path)
    with pytest.raises(CacheError, match="not found"):
        open_cache(tmp_path / "missing.h5")


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "t.h5"
    with CacheBuilder(path, _meta(), KEYS, 2):
        with pytest.raises(CacheError, match="another process is writing"):
            with CacheBuilder(path, _meta(), KEYS, 2):
                pass
    with CacheBuilder(path, _meta(), KEYS, 2):  # released: fine again
        pass


def test_resume_keeps_parts_of_the_same_job_only(tmp_path):
    path = tmp_path / "t.h5"
    probs = _probs(len(KEYS))
    with CacheBuilder(path, _meta(), KEYS, 2) as builder:
        builder.write_part(0, np.zeros((2, 4)), _views()[:2], {k: v[:2] for k, v in probs.items()})
        with pytest.raises(CacheError, match="2 chunks are not labelled"):
            builder.finish()
    assert not path.exists()
    with CacheBuilder(path, _meta(), KEYS, 2) as builder:
        assert builder.pending() == [1, 2]
        assert builder.pending(rank=1, world_size=2) == [1]
    with CacheBuilder(path, _meta(p=6), KEYS, 2) as builder:  # params changed: start over
        assert builder.pending() == [0, 1, 2]
    with CacheBuilder(path, _meta(), KEYS, 2) as builder:
        builder.write_part(0, np.zeros((2, 4)), _views()[:2], {k: v[:2] for k, v in probs.items()})
    other = ViewsConfig(count=2, box_shift=0.05, seed=1)
    with CacheBuilder(path, _meta(views_config=other.describe()), KEYS, 2) as builder:  # other views: over
        assert builder.pending() == [0, 1, 2]


def test_write_part_checks_shapes(tmp_path):
    with CacheBuilder(tmp_path / "t.h5", _meta(), KEYS, 2) as builder:
        with pytest.raises(CacheError, match="prob_b1 shape"):
            builder.write_part(0, np.zeros((2, 4)), _views()[:2], {"b1": np.zeros((2, 2, 3, 99)),
                                                                   "b2": np.zeros((2, 2, 3, 99))})
        with pytest.raises(CacheError, match=r"views shape \(2, 1, 6\) != \(2, 2, 6\)"):
            builder.write_part(0, np.zeros((2, 4)), _views()[:2, :1], _probs(2))


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "t.h5"
    probs = _probs(2)

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr("pipeline.files.os.replace", boom)
    with pytest.raises(RuntimeError):
        _write(path, probs, 2)
    assert not path.exists() and list(tmp_path.iterdir()) == []  # no temporary file left


@pytest.mark.parametrize("changed", [{"samples_sha256": "other boxes or images"}, {"precision": "bf16"},
                                     {"teacher_sha256": "u" * 64}])
def test_resume_identity_covers_every_input_of_a_row(tmp_path, changed):
    path = tmp_path / "t.h5"
    probs = _probs(len(KEYS))
    with CacheBuilder(path, _meta(), KEYS, 2) as builder:
        builder.write_part(0, np.zeros((2, 4)), _views()[:2], {k: v[:2] for k, v in probs.items()})
    with CacheBuilder(path, _meta(**changed), KEYS, 2) as builder:
        assert builder.pending() == [0, 1, 2]


def test_a_damaged_part_is_named_not_merged(tmp_path):
    path = tmp_path / "t.h5"
    probs = _probs(len(KEYS))
    with CacheBuilder(path, _meta(), KEYS, 2) as builder:
        builder.write_part(0, np.zeros((2, 4)), _views()[:2], {k: v[:2] for k, v in probs.items()})
    part = tmp_path / "t.h5.parts" / "part-000000.npz"
    part.write_bytes(part.read_bytes()[:200])
    with pytest.raises(CacheError, match=f"{part}: unreadable labelling part .*delete it and rerun"):
        CacheBuilder(path, _meta(), KEYS, 2).acquire()
    assert not path.exists()


def _flip_bytes_in_chunk(path, dataset, chunk=0):
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(chunk)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 16)
        data = bytearray(fh.read(8))
        fh.seek(info.byte_offset + 16)
        fh.write(bytes(b ^ 0x5A for b in data))


def test_flipped_bytes_are_detected_by_every_reader(tmp_path):
    path = tmp_path / "t.h5"
    _build(path)
    cache = open_cache(path)
    cache.verify()  # intact
    _flip_bytes_in_chunk(path, "heads/b1/prob")
    cache = open_cache(path)  # attributes and keys are intact
    with pytest.raises(CacheError, match=f"{path}: /heads/b1/prob is damaged .*re-run its labelling stage"):
        cache.probs(KEYS[0], 1)
    with pytest.raises(CacheError, match="heads/b1/prob is damaged"):
        cache.verify()
    cache.verify(bin_sizes=(2,))  # the other head's chunks are intact


def test_rows_that_are_not_distributions_are_refused(tmp_path):
    path = tmp_path / "t.h5"
    probs = _probs(len(KEYS))
    probs["b1"][1, 1, 2] = np.nan
    probs["b1"][3] = 0.0
    _write(path, probs)
    cache = open_cache(path)
    assert cache.probs(KEYS[0], 1).shape == (3, 198) and cache.probs(KEYS[1], 1).shape == (3, 198)
    with pytest.raises(CacheError, match=f"heads/b1/prob, key '{KEYS[1]}' view 1: 1 views are not probability"):
        cache.probs(KEYS[1], 1, view=1)
    with pytest.raises(CacheError, match=r"heads/b1/prob: 3 views are not probability distributions, e.g. row 1 "
                                         r"view 1"):
        cache.verify()


FULL_DISK = """
import resource, signal, sys
import numpy as np
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
sys.path.insert(0, sys.argv[3])
from pipeline.errors import PipelineError
try:
    if sys.argv[1] == "cache":
        from test_cache import _probs, _write
        _write(sys.argv[2], _probs(5))
    else:
        from pipeline.model import build_model
        from pipeline.train import _save
        _save(sys.argv[2], {"model": build_model("resnet18", input_size=16).state_dict()})
except PipelineError as exc:
    print(exc)
    sys.exit(1)
"""


@pytest.mark.parametrize("what", ["cache", "checkpoint"])
def test_a_full_disk_leaves_no_file_and_names_the_output(tmp_path, what):
    import subprocess
    import sys
    from pathlib import Path
    path = tmp_path / "out" / "t.h5"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, what, str(path), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout.startswith(f"{path}: could not write (") and "nothing was written" in done.stdout
    assert list((tmp_path / "out").iterdir()) == []
