from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from pipeline.config import ConfigError, apply_overrides, as_dict, parse_block, stage_config, fill_shared


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


# --- constraints declared with the keys (typing.Annotated markers) ----------------------

import dataclasses  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import typing  # noqa: E402
from typing import Annotated  # noqa: E402

import yaml  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from pipeline import cli  # noqa: E402
from pipeline.config import (AtLeast, Fraction, InRange, NonEmpty, NonNegative, Positive,  # noqa: E402
                             PositiveFloat, check_fields, load_params)

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Marked:
    batch: Positive = 1
    workers: NonNegative = 0
    share: Fraction = 0.1
    lr: PositiveFloat = 1.0
    angle: Annotated[float, InRange(0, 180)] = 0.0
    size: Annotated[int, AtLeast(16)] = 16
    sizes: Annotated[tuple[Positive, ...], NonEmpty()] = (1,)
    limit: Optional[Positive] = None
    ratio: float = 0.5
    out: Path = Path("out")


@pytest.mark.parametrize("value, message", [
    ({"batch": 0}, "blk.batch: expected int >= 1, got 0"),
    ({"workers": -1}, "blk.workers: expected int >= 0, got -1"),
    ({"share": 1}, r"blk.share: expected float in \[0, 1\), got 1.0"),
    ({"share": -0.5}, r"blk.share: expected float in \[0, 1\), got -0.5"),
    ({"lr": 0}, "blk.lr: expected float > 0, got 0.0"),
    ({"lr": float("nan")}, "blk.lr: expected a finite float, got nan"),
    ({"lr": "nan"}, "blk.lr: expected a finite float, got 'nan'"),
    ({"ratio": float("inf")}, "blk.ratio: expected a finite float, got inf"),
    ({"ratio": "-inf"}, "blk.ratio: expected a finite float"),
    ({"ratio": 10 ** 400}, "blk.ratio: expected a finite float"),
    ({"angle": 181}, r"blk.angle: expected float in \[0, 180\], got 181.0"),
    ({"size": 8}, "blk.size: expected int >= 16, got 8"),
    ({"sizes": []}, r"blk.sizes: expected a list with at least one item, got \[\]"),
    ({"sizes": [1, 0]}, r"blk.sizes\[1\]: expected int >= 1, got 0"),
    ({"limit": 0}, "blk.limit: expected int >= 1, got 0"),
    ({"batch": 1.5}, "blk.batch: expected int, got float"),
    ({"out": "\udcff"}, r"blk.out: expected a path that is valid UTF-8, got b'\\xff'"),
    ({"out": ""}, "blk.out: expected a path, got ''"),
    ({"out": "a\0b"}, "blk.out: expected a path"),
])
def test_markers_are_checked_where_the_keys_are_declared(value, message):
    with pytest.raises(ConfigError, match=message):
        parse_block(Marked, value, "blk")


def test_markers_accept_their_bounds():
    cfg = parse_block(Marked, {"batch": 1, "workers": 0, "share": 0, "lr": 1e-9, "angle": 180, "size": 16,
                               "sizes": [3], "limit": None, "ratio": -2.5}, "blk")
    assert (cfg.share, cfg.angle, cfg.sizes, cfg.limit, cfg.ratio) == (0.0, 180.0, (3,), None, -2.5)


def test_check_fields_covers_configs_built_in_code():
    from pipeline.augment import AugmentConfig
    from pipeline.synth import SynthConfig
    from pipeline.train import TrainingStageConfig

    check_fields(Marked())
    with pytest.raises(ConfigError, match="Marked.batch: expected int >= 1, got 0"):
        check_fields(Marked(batch=0))
    data = {"manifest": Path("m.csv"), "boxes": None}
    with pytest.raises(ValueError, match="TrainingStageConfig.epochs: expected int >= 1, got 0"):
        TrainingStageConfig(epochs=0, batch_size=8, lr=1e-3, **data)
    with pytest.raises(ValueError, match="TrainingStageConfig.lr: expected a finite float, got nan"):
        TrainingStageConfig(epochs=1, batch_size=8, lr=math.nan, **data)
    with pytest.raises(ValueError, match="augment.rotate: expected a finite float"):
        AugmentConfig(rotate=math.nan)
    with pytest.raises(ValueError, match="synth.workers: expected int >= 0, got -1"):
        SynthConfig(out_dir=Path("x"), workers=-1)


def test_override_errors(tmp_path):
    params = {"blk": {"lr": 1}, "empty": None}
    with pytest.raises(ConfigError, match=r"blkk: unknown block in --set 'blkk.lr=2' \(known: blk, empty\)"):
        apply_overrides(params, ["blkk.lr=2"])
    with pytest.raises(ConfigError, match=r"blk.lr: the --set value '\[1,' is not valid YAML"):
        apply_overrides(params, ["blk.lr=[1,"])
    with pytest.raises(ConfigError, match=r"blk.out: expected UTF-8 text, got b'\\xff'"):
        apply_overrides(params, ["blk.out=\udcff"])
    with pytest.raises(ConfigError, match="expected block.key=value"):
        apply_overrides(params, ["blk..lr=2"])
    assert apply_overrides(params, ["empty.x=1"])["empty"] == {"x": 1}   # an empty block in the file
    assert params == {"blk": {"lr": 1}, "empty": None}                     # the input is not changed


def test_params_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"blk:\n  out: \xff\n")
    with pytest.raises(ConfigError, match="params.yaml: not valid UTF-8"):
        load_params(path)


# --- every stage block: the constraints that are true of each key -----------------------

def _stage_classes() -> dict:
    from pipeline.ensemble_grid import EnsembleGridConfig
    from pipeline.evaluation import EvaluateConfig
    from pipeline.labeling import BaseLabelsConfig, EnsembleLabelsConfig
    from pipeline.prepare import PrepareConfig
    from pipeline.relabel import RelabelConfig
    from pipeline.report import ReportConfig
    from pipeline.student import DistillConfig
    from pipeline.synth import SynthConfig
    from pipeline.teacher import TrainTeacherConfig
    from pipeline.views import ViewsConfig
    return {"views": ViewsConfig, "synth": SynthConfig, "prepare": PrepareConfig, "relabel": RelabelConfig,
            "train_teacher": TrainTeacherConfig, "ensemble_labels": EnsembleLabelsConfig,
            "base_labels": BaseLabelsConfig, "ensemble_grid": EnsembleGridConfig, "distill": DistillConfig, "evaluate": EvaluateConfig,
            "report": ReportConfig}


# the smallest valid value of every integer key (a new integer key must be added here)
INT_MINIMUM = {
    "views": {"count": 1, "seed": 0},
    "synth": {"seed": 0, "train_count": 0, "aflw2000_count": 0, "biwi_subjects": 0, "biwi_frames": 0,
              "image_size": 32, "supersample": 1, "workers": 0, "contact_per_set": 1},
    "prepare": {"workers": 1, "aflw_test_images": 0},
    "relabel": {"haar.min_neighbors": 0, "haar.min_size": 1, "yunet.top_k": 1, "mtcnn.min_face": 1, "workers": 0,
                "chunksize": 1},
    "train_teacher": {"input_size": 16, "epochs": 1, "batch_size": 1, "seed": 0, "workers": 0,
                      "checkpoint_every": 1, "grid_samples": 1},
    "ensemble_labels": {"s": 1, "p": 0, "batch_size": 1, "chunk_size": 1, "max_windows": 1, "num_workers": 0,
                        "views.count": 1, "views.seed": 0},
    "base_labels": {"s": 1, "p": 0, "batch_size": 1, "chunk_size": 1, "max_windows": 1, "num_workers": 0,
                    "views.count": 1, "views.seed": 0},
    "ensemble_grid": {"batch_size": 1, "max_windows": 1, "num_workers": 0},
    "distill": {"input_size": 16, "epochs": 1, "batch_size": 1, "seed": 0, "workers": 0, "checkpoint_every": 1,
                "views.count": 1, "views.seed": 0},
    "evaluate": {"batch_size": 1, "max_windows": 1, "num_workers": 0, "bootstrap_resamples": 1},
    "report": {"images_per_set": 1, "cell": 32},
}


def _base(tp):
    """int / float / Path / ... under Optional[...] and Annotated[...]."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin is typing.Union:
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


def _leaves(cls, prefix=""):
    """(dotted key, base type) of every scalar key of a config class, nested blocks included."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        tp = _base(hints[f.name])
        values = typing.get_args(tp)[1] if typing.get_origin(tp) is dict else None
        if dataclasses.is_dataclass(tp):
            yield from _leaves(tp, f"{prefix}{f.name}.")
        elif dataclasses.is_dataclass(values):   # distill.method: checked through its `kd` entry
            yield from _leaves(values, f"{prefix}{f.name}.kd.")
        else:
            yield f"{prefix}{f.name}", tp


def _with(block: dict, dotted: str, value) -> dict:
    out = yaml.safe_load(yaml.safe_dump(block))
    node = out
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


def test_every_params_block_has_its_config_class():
    assert set(load_params(ROOT / "params.yaml")) - {"paths"} == set(_stage_classes()) == set(INT_MINIMUM)


@pytest.mark.parametrize("block", sorted(INT_MINIMUM))
def test_every_key_of_every_block_is_constrained(block):
    cls = _stage_classes()[block]
    params = load_params(ROOT / "params.yaml")
    base = fill_shared(cls, params[block], params, block)
    parse_block(cls, base, block)
    leaves = dict(_leaves(cls))
    assert {k for k, tp in leaves.items() if tp is int} == set(INT_MINIMUM[block])
    for key, low in INT_MINIMUM[block].items():
        with pytest.raises(ConfigError, match=re.escape(f"{block}.{key}: expected int >= {low}, got {low - 1}")):
            parse_block(cls, _with(base, key, low - 1), block)
        parse_block(cls, _with(base, key, low), block)
    for key in (k for k, tp in leaves.items() if tp is float):
        for bad in (math.nan, math.inf, -math.inf, "nan", "-inf"):
            with pytest.raises(ConfigError, match=re.escape(f"{block}.{key}: expected a finite float")):
                parse_block(cls, _with(base, key, bad), block)
    for key in (k for k, tp in leaves.items() if tp is Path):
        with pytest.raises(ConfigError, match=re.escape(f"{block}.{key}: expected a path that is valid UTF-8")):
            parse_block(cls, _with(base, key, "data/\udcff"), block)
        with pytest.raises(ConfigError, match=re.escape(f"{block}.{key}: expected a path, got ''")):
            parse_block(cls, _with(base, key, ""), block)


# --- through the real `pipeline run-stage` command: exit 2, the key named, nothing written --

def _files(folder: Path) -> set:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The repository's params.yaml in an empty folder that is the working directory: every
    output path of every stage points inside it."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_stage(*args):
    return CliRunner().invoke(cli.app, ["run-stage", *args])


def assert_config_error(project, result, message):
    assert result.exit_code == 2, result.output
    assert re.search(message, result.output), result.output
    assert result.output.startswith("config error: ") and "Traceback" not in result.output
    assert _files(project) == {"params.yaml"}


CLI_CASES = [
    # unknown block (was silently ignored), unknown keys, unparsable value
    ("train-teacher", "trian_teacher.lr=1",
     r"trian_teacher: unknown block in --set 'trian_teacher.lr=1' \(known: .*train_teacher"),
    ("train-teacher", "train_teacher.lrr=1", r"train_teacher.lrr: unknown key \(known: .*lr"),
    ("train-teacher", "train_teacher.augment.rotat=1", "train_teacher.augment.rotat: unknown key"),
    ("train-teacher", "train_teacher.lr=[1,", r"train_teacher.lr: the --set value '\[1,' is not valid YAML"),
    ("evaluate", "distill.epochs={", "distill.epochs: the --set value '{' is not valid YAML"),
    # sizes and counts >= 1
    ("ensemble-labels", "ensemble_labels.batch_size=0", "ensemble_labels.batch_size: expected int >= 1, got 0"),
    ("ensemble-labels", "ensemble_labels.chunk_size=0", "ensemble_labels.chunk_size: expected int >= 1, got 0"),
    ("ensemble-labels", "ensemble_labels.max_windows=0", "ensemble_labels.max_windows: expected int >= 1"),
    ("ensemble-grid", "ensemble_grid.batch_size=0", "ensemble_grid.batch_size: expected int >= 1, got 0"),
    ("ensemble-grid", "ensemble_grid.strides=[2, 0]", r"ensemble_grid.strides\[1\]: expected int >= 1, got 0"),
    ("ensemble-grid", "ensemble_grid.paddings=[]", "ensemble_grid.paddings: expected a list with at least one"),
    ("evaluate", "evaluate.max_windows=0", "evaluate.max_windows: expected int >= 1, got 0"),
    ("evaluate", "ensemble_labels.batch_size=0", "ensemble_labels.batch_size: expected int >= 1, got 0"),
    ("train-teacher", "train_teacher.epochs=0", "train_teacher.epochs: expected int >= 1, got 0"),
    ("train-teacher", "train_teacher.batch_size=-4", "train_teacher.batch_size: expected int >= 1, got -4"),
    ("distill", "distill.checkpoint_every=0", "distill.checkpoint_every: expected int >= 1, got 0"),
    ("relabel", "relabel.chunksize=0", "relabel.chunksize: expected int >= 1, got 0"),
    ("relabel", "relabel.yunet.top_k=0", "relabel.yunet.top_k: expected int >= 1, got 0"),
    ("synth", "synth.supersample=0", "synth.supersample: expected int >= 1, got 0"),
    ("synth", "synth.biwi_size=[160, 8]", r"synth.biwi_size\[1\]: expected int >= 32, got 8"),
    ("prepare", "prepare.workers=0", "prepare.workers: expected int >= 1, got 0"),
    ("report", "report.images_per_set=0", "report.images_per_set: expected int >= 1, got 0"),
    # worker counts
    ("synth", "synth.workers=-1", "synth.workers: expected int >= 0, got -1"),
    ("prepare", "prepare.workers=-1", "prepare.workers: expected int >= 1, got -1"),
    ("relabel", "relabel.workers=-1", "relabel.workers: expected int >= 0, got -1"),
    ("train-teacher", "train_teacher.workers=-1", "train_teacher.workers: expected int >= 0, got -1"),
    ("distill", "distill.workers=-2", "distill.workers: expected int >= 0, got -2"),
    ("ensemble-labels", "ensemble_labels.num_workers=-1", "ensemble_labels.num_workers: expected int >= 0"),
    ("ensemble-grid", "ensemble_grid.num_workers=-1", "ensemble_grid.num_workers: expected int >= 0"),
    ("evaluate", "evaluate.num_workers=-1", "evaluate.num_workers: expected int >= 0, got -1"),
    # fractions
    ("train-teacher", "train_teacher.val_fraction=1", r"train_teacher.val_fraction: expected float in \[0, 1\), got 1.0"),
    ("distill", "distill.val_fraction=-0.1", r"distill.val_fraction: expected float in \[0, 1\), got -0.1"),
    ("synth", "synth.out_of_range=1", r"synth.out_of_range: expected float in \[0, 1\), got 1.0"),
    ("synth", "synth.flip_fraction=1.5", r"synth.flip_fraction: expected float in \[0, 1\], got 1.5"),
    ("relabel", "relabel.min_iou=1.5", r"relabel.min_iou: expected float in \[0, 1\], got 1.5"),
    ("relabel", "relabel.yunet.nms_threshold=-0.1", r"relabel.yunet.nms_threshold: expected float in \[0, 1\]"),
    # NaN and infinities never pass
    ("train-teacher", "train_teacher.lr=.nan", "train_teacher.lr: expected a finite float, got nan"),
    ("train-teacher", "train_teacher.lr=nan", "train_teacher.lr: expected a finite float, got 'nan'"),
    ("distill", "distill.lr=.inf", "distill.lr: expected a finite float, got inf"),
    ("distill", "distill.w_cls=.nan", "distill.w_cls: expected a finite float, got nan"),
    ("distill", "distill.w_cls=-1", "distill.w_cls: expected float >= 0, got -1.0"),
    ("train-teacher", "train_teacher.augment.rotate=.nan", "train_teacher.augment.rotate: expected a finite float"),
    ("relabel", "relabel.landmark_scale=.nan", "relabel.landmark_scale: expected a finite float, got nan"),
    ("relabel", "relabel.haar.scale_factor=-.inf", "relabel.haar.scale_factor: expected a finite float"),
    ("synth", "synth.flip_fraction=.nan", "synth.flip_fraction: expected a finite float, got nan"),
    # paths that are not valid UTF-8 (a shell's $'\xff' reaches Python as a surrogate escape)
    ("prepare", "prepare.data_root=\udcff", r"prepare.data_root: expected UTF-8 text, got b'\\xff'"),
    ("ensemble-labels", "ensemble_labels.out=cache/\udcff.h5", r"ensemble_labels.out: expected UTF-8 text"),
    ("prepare", 'prepare.data_root="\\udcff"', r"prepare.data_root: expected a path that is valid UTF-8"),
]


@pytest.mark.parametrize("stage, override, message", CLI_CASES, ids=[c[1] for c in CLI_CASES])
def test_run_stage_rejects_bad_settings_before_writing(project, stage, override, message):
    assert_config_error(project, run_stage(stage, "--params", "params.yaml", "--set", override), message)


def test_unknown_key_in_the_params_file_through_the_cli(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ensemble_labels"]["batch_sise"] = 4
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert_config_error(project, run_stage("ensemble-labels"), "ensemble_labels.batch_sise: unknown key")


def test_labelling_batch_size_0_writes_nothing(tmp_path, monkeypatch):
    """With its inputs present, batch_size 0 used to end in a range() error after the cache's
    parts folder was made; now it stops at the config, before anything is written."""
    from fixtures_project import noise_samples, write_project

    write_project(tmp_path, noise_samples(tmp_path, 4, 1, pose_limit=60), 16)
    block = {"s": 2, "p": 4, "manifest": str(tmp_path / "manifest.csv"), "checkpoint": str(tmp_path / "teacher.pt"),
             "out": str(tmp_path / "cache" / "teacher-labels.h5"), "batch_size": 2, "chunk_size": 2,
             "num_workers": 0, "device": "cpu"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"ensemble_labels": block}))
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    result = run_stage("ensemble-labels", "--set", "ensemble_labels.batch_size=0")
    assert result.exit_code == 2, result.output
    assert "ensemble_labels.batch_size: expected int >= 1, got 0" in result.output
    assert _files(tmp_path) == before


def test_non_utf8_path_argument_in_a_real_process(project):
    """The bytes of `--set prepare.data_root=$'\\xff'` as a shell passes them."""
    out = subprocess.run([sys.executable, "-m", "pipeline", "run-stage", "prepare", "--set",
                          b"prepare.data_root=\xff"], cwd=project, capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    stderr = out.stderr.decode("utf-8", "backslashreplace")
    assert out.returncode == 2, stderr
    assert "prepare.data_root: expected UTF-8 text, got b'\\xff'" in stderr
    assert "Traceback" not in stderr and _files(project) == {"params.yaml"}


def test_a_dotted_from_paths_key_reads_into_a_mapping_of_paths(tmp_path):
    from pipeline.labeling import BaseLabelsConfig, EnsembleLabelsConfig
    from pipeline.student import DistillConfig
    teachers = {"ensemble": "c/e.h5", "base": "c/b.h5"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "paths": {"manifest": "m.csv", "teacher": "t.pt", "students": "s", "teachers": teachers},
        "ensemble_labels": {}, "base_labels": {}, "distill": {"students": ["resnet18"]}}))
    assert stage_config("ensemble_labels", EnsembleLabelsConfig, tmp_path / "params.yaml").out == Path("c/e.h5")
    assert stage_config("base_labels", BaseLabelsConfig, tmp_path / "params.yaml").out == Path("c/b.h5")
    distill = stage_config("distill", DistillConfig, tmp_path / "params.yaml")
    assert distill.teachers == {k: Path(v) for k, v in teachers.items()}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"paths": {"manifest": "m.csv", "teacher": "t.pt"},
                                                          "base_labels": {}}))
    with pytest.raises(ConfigError, match="base_labels.out: not set, and the params file has no paths.teachers.base"):
        stage_config("base_labels", BaseLabelsConfig, tmp_path / "params.yaml")


def test_the_views_block_is_shared_by_every_teacher_and_student(tmp_path):
    from pipeline.labeling import BaseLabelsConfig, EnsembleLabelsConfig
    from pipeline.student import DistillConfig
    from pipeline.views import ViewsConfig
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "paths": {"manifest": "m.csv", "teacher": "t.pt", "students": "s",
                  "teachers": {"ensemble": "c/e.h5", "base": "c/b.h5"}},
        "views": {"count": 4, "rotate": 10.0},
        "ensemble_labels": {}, "base_labels": {}, "distill": {"students": ["resnet18"]}}))
    blocks = {"ensemble_labels": EnsembleLabelsConfig, "base_labels": BaseLabelsConfig, "distill": DistillConfig}
    for overrides, want in (((), ViewsConfig(count=4, rotate=10.0)),
                            (["views.count=2"], ViewsConfig(count=2, rotate=10.0))):   # one edit reaches all three
        assert {stage_config(b, cls, params, overrides).views for b, cls in blocks.items()} == {want}
    with pytest.raises(ConfigError, match=r"views.count: expected int >= 1, got 0"):
        stage_config("distill", DistillConfig, params, ["views.count=0"])
    with pytest.raises(ConfigError, match=r"views.rotate: expected float in \[0, 180\], got 200.0"):
        stage_config("base_labels", BaseLabelsConfig, params, ["views.rotate=200"])
    params.write_text(yaml.safe_dump({"paths": {"manifest": "m.csv", "teacher": "t.pt",
                                                "teachers": {"ensemble": "c/e.h5"}}, "ensemble_labels": {}}))
    assert stage_config("ensemble_labels", EnsembleLabelsConfig, params).views == ViewsConfig()   # no block: R = 1
