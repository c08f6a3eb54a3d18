from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from pipeline.config import ConfigError, apply_overrides, as_dict, parse_block, stage_config


@dataclass(frozen=True)
class Inner:
    depth: int = 18


@dataclass(frozen=True)
class Block:
    lr: float
    epochs: int = 3
    backbone: Literal["resnet18", "resnet50"] = "resnet18"
    out: Path = Path("out")
    sizes: tuple[int, ...] = (1, 2)
    weights: Optional[str] = None
    inner: Inner = field(default_factory=Inner)


def write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_reads_only_its_block_with_types(tmp_path):
    path = write(tmp_path, "blk:\n  lr: 1\n  sizes: [1, 4]\n  inner: {depth: 50}\nother: {anything: [1]}\n")
    cfg = stage_config("blk", Block, path)
    assert cfg == Block(lr=1.0, sizes=(1, 4), inner=Inner(50))
    assert isinstance(cfg.lr, float) and cfg.out == Path("out")
    assert as_dict(cfg)["out"] == "out"


@pytest.mark.parametrize("text, message", [
    ("blk: {lr: 1, epoch: 3}", "blk.epoch: unknown key"),
    ("blk: {lr: fast}", "blk.lr: expected float, got str"),
    ("blk: {lr: 1, epochs: 2.5}", "blk.epochs: expected int"),
    ("blk: {lr: 1, epochs: true}", "blk.epochs: expected int"),
    ("blk: {lr: 1, backbone: resnet19}", "blk.backbone: expected one of"),
    ("blk: {lr: 1, inner: {depht: 3}}", "blk.inner.depht: unknown key"),
    ("blk: {lr: 1, sizes: [1, x]}", r"blk.sizes\[1\]: expected int"),
    ("blk: {epochs: 2}", "blk.lr: required key is missing"),
    ("nope: {}", "no 'blk' block"),
])
def test_bad_params_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        stage_config("blk", Block, write(tmp_path, text))


def test_overrides_use_dotted_paths(tmp_path):
    path = write(tmp_path, "blk: {lr: 1}\n")
    cfg = stage_config("blk", Block, path, overrides=["blk.lr=3e-4", "blk.inner.depth=34"])
    assert cfg.lr == pytest.approx(3e-4) and cfg.inner.depth == 34
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["blk.lr"])


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        stage_config("blk", Block, tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        stage_config("blk", Block, write(tmp_path, "blk: [unclosed"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_block(Block, [1, 2], "blk")
