"""``pipeline bench train|labeling|distill|kd-rotation|all``: thin wrappers over
:mod:`pipeline.benchmarks`; each prints a report of ratios measured side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

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
             images: Annotated[int, typer.Option(help="images labelled per timed run")] = 8,
             size: Annotated[Optional[int], typer.Option(help="input size; default train_teacher.input_size")] = None,
             s: Annotated[Optional[int], typer.Option(help="ensemble stride; default ensemble_labels.s")] = None,
             p: Annotated[Optional[int], typer.Option(help="ensemble padding; default ensemble_labels.p")] = None,
             backbone: Annotated[Optional[str], typer.Option(help="default train_teacher.backbone")] = None,
             naive_batch: Annotated[int, typer.Option(help="windows per naive forward; 0 = all A of an image")] = 1,
             max_windows: Annotated[int, typer.Option(help="windows per forward pass of the project's path")] = 256,
             device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
             amp: Annotated[bool, typer.Option(help="bf16 autocast + channels_last (CUDA only)")] = False,
             repeats: Annotated[int, typer.Option(help="timed repeats of each path (median)")] = 2,
             threads: Threads = 0):
    """Naive crops vs Z + strided views vs pure forward; cache bytes and fp16 KL."""
    from ..benchmarks import labeling as bench
    from ..config import load_params
    _threads(threads)
    blocks = load_params(params)
    teacher, ensemble = blocks.get("train_teacher", {}), blocks.get("ensemble_labels", {})
    r = bench.run(images, size or teacher.get("input_size", 64), s or ensemble.get("s", 5),
                  p or ensemble.get("p", 10), backbone or teacher.get("backbone", "resnet18"),
                  naive_batch, max_windows, device, amp, repeats)
    typer.echo(bench.report(r))


@bench_app.command("distill")
@exits_on_errors
def distill(params: Params = Path("params.yaml"),
            steps: Annotated[int, typer.Option(help="timed steps for (a) and (b), plus one warm-up step")] = 20,
            online_steps: Annotated[int, typer.Option(help="timed steps for (c), plus one warm-up step")] = 4,
            workers: Workers = None, threads: Threads = 0,
            online_s: Annotated[Optional[int], typer.Option(help="stride s of (c); default the cache's")] = None,
            online_p: Annotated[Optional[int], typer.Option(help="padding p of (c); default the cache's")] = None):
    """Student training images/s: cache vs hard labels vs the teacher ensemble run online."""
    from ..benchmarks import distill as bench
    from ..config import ConfigError
    if (online_s is None) != (online_p is None):
        raise ConfigError("--online-s and --online-p: give both or neither")
    _threads(threads)
    r = bench.run(params, steps, online_steps, workers, online_sp=(online_s, online_p) if online_s else None)
    typer.echo(bench.report(r))


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
              steps: Annotated[int, typer.Option(help="timed training steps per training benchmark")] = 20):
    """Every benchmark side by side (after `dvc repro`); one table of measured ratios against the targets."""
    from ..benchmarks import all as bench
    typer.echo(bench.report(bench.rows(params, steps)))
