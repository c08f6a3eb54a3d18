import json

import cv2
import numpy as np
import pytest

from pipeline import boxes as BX
from pipeline import image as IM
from pipeline.manifest import ManifestError, Sample, read_manifest, write_manifest
from pipeline.files import file_sha256


def sample(key, split="train", box=(1, 2, 30, 40)):
    return Sample(key=key, dataset="D", image=f"img/{key}.jpg", pose=(1.5, -2.25, 3.0), box=box, split=split)


def test_manifest_is_sorted_deterministic_and_round_trips(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    sha_a = write_manifest(a, [sample("k2"), sample("k1", "test")])
    sha_b = write_manifest(b, [sample("k1", "test"), sample("k2")])
    assert sha_a == sha_b == file_sha256(a)
    rows = read_manifest(a)
    assert [s.key for s in rows] == ["k1", "k2"]
    assert rows[0].pose == (1.5, -2.25, 3.0) and rows[0].box == (1.0, 2.0, 30.0, 40.0)
    assert [s.key for s in read_manifest(a, split="train")] == ["k2"]


def test_manifest_refuses_bad_samples(tmp_path):
    with pytest.raises(ManifestError, match="duplicate"):
        write_manifest(tmp_path / "m.csv", [sample("k"), sample("k")])
    with pytest.raises(ManifestError, match="no box"):
        write_manifest(tmp_path / "m.csv", [sample("k", box=None)])
    assert not (tmp_path / "m.csv").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("key,nope\n")
    with pytest.raises(ManifestError, match="bad.csv: header"):
        read_manifest(bad)


def test_manifest_with_a_duplicate_key_is_refused_when_read(tmp_path):
    path = tmp_path / "m.csv"
    write_manifest(path, [sample("k1"), sample("k2", "test")])
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [lines[1]]) + "\n")          # k1 again, on line 4
    with pytest.raises(ManifestError, match=r"m.csv:4: duplicate key 'k1' \(first on line 2\)"):
        read_manifest(path, split="test")                          # whatever the reader keeps


@pytest.mark.parametrize("reader", ["manifest", "boxes", "box json", "prepare report", "evaluate results"])
def test_a_binary_file_or_a_folder_for_a_table_is_named(tmp_path, reader):
    """A binary file (an image given as the manifest) or a folder: the reader's own error, not
    Python's UnicodeDecodeError or IsADirectoryError."""
    from pipeline.config import ConfigError
    from pipeline.evaluation import read_protocol
    from pipeline.report import read_metrics
    read, error = {"manifest": (read_manifest, ManifestError), "boxes": (BX.read_boxes, BX.BoxFileError),
                   "box json": (BX.read_box_json, BX.BoxFileError), "prepare report": (read_protocol, ConfigError),
                   "evaluate results": (read_metrics, ConfigError)}[reader]
    binary = tmp_path / "image.png"
    binary.write_bytes(IM.encode_image(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(error, match=r"image\.png: not valid UTF-8 text \(byte \d+\)"):
        read(binary)
    with pytest.raises(error, match=f"{tmp_path}: cannot be read"):
        read(tmp_path)


def test_published_box_json_and_matching(tmp_path):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({
        "AFW/a.jpg": [{"bbox": [0, 0, 10, 10], "type": "train"}, {"bbox": [50, 50, 70, 70], "type": "train"}],
        "b.jpg": [{"bbox": [1, 1, 5, 5], "faceid": 7}, {"bbox": [10, 10, 20, 20], "faceid": 9}],
    }))
    data = BX.read_box_json(path)
    assert BX.select_published(data["AFW/a.jpg"], reference=(48, 52, 69, 71)) == (50, 50, 70, 70)
    assert BX.select_published(data["AFW/a.jpg"], reference=(100, 100, 110, 110)) is None  # no overlap
    assert BX.select_published(data["AFW/a.jpg"], reference=(100, 100, 110, 110), min_iou=None) == (0, 0, 10, 10)
    assert BX.select_published(data["b.jpg"], faceid=9) == (10, 10, 20, 20)
    assert BX.select_published(data["b.jpg"]) is None  # ambiguous without a reference
    assert BX.select_published(data["AFW/a.jpg"], split="test", reference=(48, 52, 69, 71)) == (50, 50, 70, 70)
    assert BX.best_iou([(0, 0, 10, 10), (0, 0, 10, 10)], (0, 0, 10, 10)) == (0, 1.0)  # ties: first
    assert BX.best_iou([], (0, 0, 1, 1)) == (None, None)


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("{not json", "malformed JSON"),
    ("[1, 2]", "top level"),
    ('{"a.jpg": [{"bbox": [5, 0, 1, 10]}]}', "x2 > x1"),
    ('{"a.jpg": [{"box": [0, 0, 1, 1]}]}', "needs a 'bbox'"),
    ('{"a.jpg": [{"bbox": [0, 0, 1, 1], "type": "val"}]}', "type must be"),
    ('{"a.jpg": [{"bbox": [0, 0, 1, 1]}], "b.jpg": [], "a.jpg": []}', "duplicate key 'a.jpg'"),
])
def test_bad_box_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "pub.json"
    path.write_text(text)
    with pytest.raises(BX.BoxFileError, match=message) as info:
        BX.read_box_json(path)
    assert "pub.json" in str(info.value)


def test_boxes_csv_round_trip_and_apply(tmp_path):
    path = tmp_path / "boxes.csv"
    BX.write_boxes(path, {"k2": ((0, 0, 5, 5), "haar"), "k1": ((1, 1, 9, 9.5), "landmarks")})
    read = BX.read_boxes(path)
    assert list(read) == ["k1", "k2"] and read["k1"] == ((1, 1, 9, 9.5), "landmarks")
    applied = BX.apply_boxes([sample("k1")], read)
    assert applied[0].box == (1, 1, 9, 9.5)
    with pytest.raises(BX.BoxFileError, match="no box for 1 samples"):
        BX.apply_boxes([sample("k3")], read)
    path.write_text(path.read_text() + "k1,0,0,5,5,haar\n")
    with pytest.raises(BX.BoxFileError, match="boxes.csv:4: duplicate key 'k1'"):
        BX.read_boxes(path)


def test_load_rgb_converts_once_and_names_bad_files(tmp_path):
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 0] = 255  # pure blue in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "blue.png"), bgr)
    rgb = IM.load_rgb(tmp_path / "blue.png")
    assert rgb[0, 0].tolist() == [0, 0, 255]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(IM.ImageError, match="broken.jpg: not a readable image"):
        IM.load_rgb(tmp_path / "broken.jpg")
    with pytest.raises(IM.ImageError, match="missing.jpg: image file not found"):
        IM.load_rgb(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")          # cv2.imdecode asserts on an empty buffer
    with pytest.raises(IM.ImageError, match="empty.jpg: empty file"):
        IM.load_rgb(tmp_path / "empty.jpg")


def test_load_rgb_refuses_a_jpeg_and_a_png_cut_in_half(tmp_path):
    rgb = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8), (9, 9), 3)
    for suffix in (".jpg", ".png"):
        data = IM.encode_image(rgb, suffix)
        whole, half = tmp_path / f"whole{suffix}", tmp_path / f"half{suffix}"
        whole.write_bytes(data + b"\0" * 16)      # padding after the end marker is harmless
        half.write_bytes(data[:len(data) // 2])
        assert IM.load_rgb(whole).shape == (96, 128, 3)
        with pytest.raises(IM.ImageError, match=f"half\\{suffix}: .*truncated"):
            IM.load_rgb(half)
    # what OpenCV 4.10 decodes with only a warning, the check finds by itself
    jpeg = IM.encode_image(rgb, ".jpg")
    assert not IM.truncated_jpeg(jpeg) and not IM.truncated_jpeg(IM.encode_image(rgb, ".png"))
    assert IM.truncated_jpeg(jpeg[:len(jpeg) // 2]) and IM.truncated_jpeg(jpeg[:-2])


def test_crop_box_stretches_and_pads_from_the_image():
    img = np.random.default_rng(0).integers(0, 255, size=(100, 120, 3), dtype=np.uint8)
    box = (20, 30, 60, 50)  # 40 x 20 box -> stretched to 16 x 16
    crop = IM.crop_box(img, box, 16, 16)
    assert crop.shape == (16, 16, 3)
    padded = IM.crop_box(img, box, 16, 16, pad=4)
    assert padded.shape == (24, 24, 3)
    np.testing.assert_array_equal(padded[4:20, 4:20], crop)  # the centre window is the plain crop
    # a window of the padded crop equals the crop of the shifted box (eq. 5)
    rx, ry = 16 / 40, 16 / 20
    shifted = (20 + (2 - 4) / rx, 30 + (6 - 4) / ry, 60 + (2 - 4) / rx, 50 + (6 - 4) / ry)
    np.testing.assert_array_equal(padded[6:22, 2:18], IM.crop_box(img, shifted, 16, 16))
    # identity box -> identity crop
    np.testing.assert_array_equal(IM.crop_box(img, (0, 0, 120, 100), 100, 120), img)


def test_check_box_errors():
    with pytest.raises(IM.ImageError, match="empty"):
        IM.check_box((5, 5, 5, 10), 10, 10, "x.jpg")
    with pytest.raises(IM.ImageError, match="x.jpg: box .* outside the 10x10 image"):
        IM.check_box((20, 20, 30, 30), 10, 10, "x.jpg")
    assert IM.MIN_BOX_INSIDE == 0.5
    with pytest.raises(IM.ImageError, match=r"mostly outside the 10x10 image \(1% of it inside, need 50%\)"):
        IM.check_box((9, 9, 19, 19), 10, 10, "x.jpg")               # overlaps by one pixel
    with pytest.raises(IM.ImageError, match="49% of it inside"):
        IM.check_box((-5.1, 0, 4.9, 10), 10, 10)
    assert IM.check_box((-5, 0, 5, 10), 10, 10) == (-5, 0, 5, 10)  # exactly half inside


def test_to_tensor_normalises_imagenet():
    img = np.full((2, 2, 3), 255, np.uint8)
    t = IM.to_tensor(img)
    assert t.shape == (3, 2, 2)
    np.testing.assert_allclose(t[:, 0, 0].numpy(), (1 - IM.IMAGENET_MEAN) / IM.IMAGENET_STD, rtol=1e-6)
