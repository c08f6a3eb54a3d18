"""``pipeline bench train|labeling|distill|predict|detect|consistency|kd-rotation|all``: thin wrappers over
:mod:`pipeline.benchmarks`; each prints a report of ratios measured side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .app import bench_app, exits_on_errors

Params = Annotated[Path, typer.Option("--params", help="params file of the project (defaults and inputs)")]
Threads = Annotated[int, typer.Option("--threads", help="torch threads; 0 = torch's default")]
Workers = Annotated[Optional[int], typer.Option("--workers", help="DataLoader workers; default: the params block's")]


def _threads(threads: int) -> None:
    if threads:
        import torch
        torch.set_num_threads(threads)


@bench_app.command("train")
@exits_on_errors
def train(params: Params = Path("params.yaml"),
          steps: Annotated[int, typer.Option(help="timed training steps (plus one warm-up step)")] = 20,
          workers: Workers = None, threads: Threads = 0):
    """Images/s of train-teacher and the share of step time spent waiting for data."""
    from ..benchmarks import train as bench
    _threads(threads)
    typer.echo(bench.report(bench.run(params, steps, workers)))


@bench_app.command("labeling")
@exits_on_errors
def labeling(params: Params = Path("params.yaml"),
             images: Annotated[int, typer.Option(help="training images labelled per timed run (the first by key)")] = 768,
             s: Annotated[Optional[int], typer.Option(help="ensemble stride; default ensemble_labels.s")] = None,
             p: Annotated[Optional[int], typer.Option(help="ensemble padding; default ensemble_labels.p")] = None,
             device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
             repeats: Annotated[int, typer.Option(help="interleaved timed runs of each variant (median)")] = 3,
             threads: Threads = 0):
    """The labelling job vs crops, strided views and the bare forward pass (fp32 and bf16); cache bytes, read time, KL."""
    from ..benchmarks import labeling as bench
    _threads(threads)
    typer.echo(bench.report(bench.run(params, images, s, p, repeats, device)))


@bench_app.command("distill")
@exits_on_errors
def distill(params: Params = Path("params.yaml"),
            steps: Annotated[int, typer.Option(help="timed steps for (a) and (b), plus one warm-up step")] = 60,
            online_steps: Annotated[int, typer.Option(help="timed steps for (c), plus one warm-up step")] = 4,
            workers: Workers = None, threads: Threads = 0,
            online_s: Annotated[Optional[int], typer.Option(help="stride s of (c); default the cache's")] = None,
            online_p: Annotated[Optional[int], typer.Option(help="padding p of (c); default the cache's")] = None,
            repeats: Annotated[int, typer.Option(help="interleaved rounds of (a), (b), (c) (medians)")] = 3):
    """Student training images/s: cache vs hard labels vs the teacher ensemble run online."""
    from ..benchmarks import distill as bench
    from ..config import ConfigError
    if (online_s is None) != (online_p is None):
        raise ConfigError("--online-s and --online-p: give both or neither")
    _threads(threads)
    r = bench.run(params, steps, online_steps, workers, online_sp=(online_s, online_p) if online_s else None,
                  repeats=repeats)
    typer.echo(bench.report(r))


@bench_app.command("predict")
@exits_on_errors
def predict(checkpoint: Annotated[Path, typer.Argument(help="a student or teacher checkpoint (.pt)")],
            repeats: Annotated[int, typer.Option(help="interleaved timed runs (median)")] = 5,
            batches: Annotated[int, typer.Option(help="batches per timed run")] = 20,
            threads: Threads = 0):
    """PyTorch vs its ONNX export in onnxruntime: images/s and latency at batch 1 and 32 (needs the deploy extra)."""
    from ..benchmarks import predict as bench
    typer.echo(bench.report(bench.run(checkpoint, repeats=repeats, batches=batches, threads=threads)))


@bench_app.command("detect")
@exits_on_errors
def detect(params: Params = Path("params.yaml"),
           per_dataset: Annotated[int, typer.Option(help="test images per dataset (the first of the manifest)")] = 100,
           lfw: Annotated[int, typer.Option(help="faces and non-faces of skimage's LFW subset (at most 100 each)")] = 100):
    """MTCNN and Haar per score threshold: found and false faces on the manifest's test images, skimage's photos (a person or none) and LFW faces; images/s (needs the deploy extra)."""
    from ..benchmarks import detect as bench
    typer.echo(bench.report(bench.run(params, per_dataset, lfw)))


@bench_app.command("consistency")
@exits_on_errors
def consistency(inputs: Annotated[List[str], typer.Argument(help="photos and folders of photos (no labels needed)")],
                model: Annotated[Path, typer.Option("--model", help="checkpoint (.pt) or exported ONNX file (.onnx)")],
                angle: Annotated[float, typer.Option(help="in-plane turn t in degrees: the photo is turned by +t and -t")] = 15.0,
                detector: Annotated[str, typer.Option(help="mtcnn or haar, as `pipeline predict`")] = "mtcnn",
                min_score: Annotated[Optional[float], typer.Option(help="as `pipeline predict --min-score`")] = None,
                threads: Threads = 0):
    """Label-free checks on real photos: mean |deviation| per angle from the mirror rule and the in-plane rotation rule."""
    from ..benchmarks import consistency as bench
    from ..predict import PoseEstimator
    _threads(threads)
    estimator = PoseEstimator(model, detector=detector, min_score=min_score)
    typer.echo(bench.report(bench.run(estimator, inputs, angle), f"{model} ({detector})"))


@bench_app.command("kd-rotation")
@exits_on_errors
def kd_rotation(params: Params = Path("params.yaml"),
                samples: Annotated[int, typer.Option(help="training samples measured (evenly spaced over the cache)")] = 48,
                magnitudes: Annotated[str, typer.Option(help="rotation magnitudes in degrees, comma-separated")] = "0,5,10,15,30",
                threads: Threads = 0):
    """KL between the teacher on rotated/flipped crops and the cached target, per rule."""
    from ..benchmarks import kd_rotation as bench
    _threads(threads)
    typer.echo(bench.run(params, samples, [float(v) for v in magnitudes.split(",") if v.strip()]))


@bench_app.command("all")
@exits_on_errors
def bench_all(params: Params = Path("params.yaml"),
              steps: Annotated[int, typer.Option(help="timed training steps per training benchmark")] = 60):
    """Every benchmark side by side (after `dvc repro`); one table of measured ratios against the targets."""
    from ..benchmarks import all as bench
    typer.echo(bench.report(bench.rows(params, steps)))
